FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir . && useradd --create-home exporter && mkdir -p /app/var && chown exporter /app/var
USER exporter
ENV EXPORTER_VAR_DIR=/app/var
EXPOSE 8000
CMD ["exporter", "up"]
