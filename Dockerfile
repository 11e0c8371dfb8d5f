# One image for the three services; the command picks which (gim-connect, gim-logic, gim-business).
FROM python:3.12-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir /app
ENV GIM_CONFIG_DIR=/app/config
CMD ["gim", "--help"]
