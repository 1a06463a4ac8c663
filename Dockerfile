FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DJANGO_SECRET_KEY=collectstatic python manage.py collectstatic --noinput --verbosity 0
EXPOSE 8000
# Websocket messages over 4 KiB (CHAT_WS_MAX_FRAME_BYTES) are refused by daphne before they are buffered.
CMD ["daphne", "--bind", "0.0.0.0", "--port", "8000", "--websocket-max-message-size", "4096", "--websocket-max-frame-size", "4096", "chatproject.asgi:application"]
