"""The chat domain in plain Python: it decides what may happen and records what did.

Nothing here knows about Django, HTTP or Kafka; `chats/` adapts those to the ports in `ports.py`.
"""
