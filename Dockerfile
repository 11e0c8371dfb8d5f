# One image for every gim node; the compose service's command picks which
# (gim-business, gim-logic, gim-connect). Configuration comes from GIM_* variables.
FROM python:3.12-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir /app
ENV GIM_CONFIG_DIR=/app/config
# connect: TCP, WebSocket, ConnectInt; logic: LogicInt, LogicExt; business: UserInt, UserExt
EXPOSE 8080 8081 50100 50000 50001 50300 50301
CMD ["gim", "--help"]
