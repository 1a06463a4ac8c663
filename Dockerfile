FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DJANGO_SECRET_KEY=collectstatic python manage.py collectstatic --noinput --verbosity 0
EXPOSE 8000
# daphne with the service's websocket limits; one process uses one core: run one container per core, or
# several `serve` processes in one container (they share the port).
CMD ["python", "manage.py", "serve", "--host", "0.0.0.0", "--port", "8000"]
