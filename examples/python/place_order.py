"""Places an order with the generated Python stubs, follows it to its
terminal status, and prints it.

    just clients                                  # generates the stubs, runs this against fresh services
    PYTHONPATH=.ordo/gen/python python3 examples/python/place_order.py [host:port]

With ORDO_TLS_CA_FILE set it connects over TLS, trusting that CA; with
ORDO_TLS_CERT_FILE and ORDO_TLS_KEY_FILE too, it presents that client
certificate (mutual TLS).
"""

import os
import sys
import time

import grpc

from ordo.order.v1 import order_pb2, order_pb2_grpc


def read(name: str) -> bytes | None:
    path = os.environ.get(name)
    if not path:
        return None
    with open(path, "rb") as file:
        return file.read()


def channel_to(target: str) -> grpc.Channel:
    ca = read("ORDO_TLS_CA_FILE")
    if ca is None:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=read("ORDO_TLS_KEY_FILE"),
        certificate_chain=read("ORDO_TLS_CERT_FILE"),
    )
    return grpc.secure_channel(target, credentials)


def main() -> int:
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ORDO_ORDER_ADDR", "127.0.0.1:50051")
    with channel_to(target) as channel:
        orders = order_pb2_grpc.OrderServiceStub(channel)
        placed = orders.PlaceOrder(
            order_pb2.PlaceOrderRequest(
                customer_id="python-example",
                currency="EUR",
                lines=[order_pb2.OrderLine(sku="BOOK-DDIA", quantity=1, unit_price_minor=4599)],
                idempotency_key=f"python-example-{os.getpid()}",
            ),
            metadata=[("x-correlation-id", "python-example")],
            timeout=10,
        ).order
        print(f"placed {placed.order_id} ({order_pb2.OrderStatus.Name(placed.status)})")
        for _ in range(300):
            order = orders.GetOrder(order_pb2.GetOrderRequest(order_id=placed.order_id), timeout=10).order
            if order.status != order_pb2.ORDER_STATUS_PENDING:
                print(f"order {order.order_id} is {order_pb2.OrderStatus.Name(order.status)} {order.status_reason}")
                return 0
            time.sleep(0.1)
    print("the order stayed PENDING for 30 s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
