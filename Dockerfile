# One image for the web app and the mail worker (docker-compose.yml runs both).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY events_app ./events_app
COPY templates ./templates
COPY emails ./emails
# The versions the tests ran with (requirements.lock, made by `make lock`).
RUN pip install -c requirements.lock . && useradd --create-home events && mkdir -p /app/var && chown events /app/var
USER events
EXPOSE 8000
CMD ["events-app", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
