"""The API's JSON parser: DRF's, through `chats.json_input`, so JSON nested too deeply is a 400
`parse_error` like any other malformed body instead of a RecursionError and a 500."""

from __future__ import annotations

import codecs
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from chats.json_input import parse_json


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})
        try:
            # The body is at most DATA_UPLOAD_MAX_MEMORY_SIZE (the web server refuses more), so read it whole.
            return parse_json(codecs.getreader(encoding)(stream).read(), allow_nan=not self.strict)
        except ValueError as error:  # UnicodeDecodeError included
            raise ParseError(f"JSON parse error - {error}") from None
