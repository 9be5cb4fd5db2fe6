"""Places an order with the generated Python stubs, follows it to its
terminal status, and prints it.

    just clients                                  # generates the stubs, runs this against fresh services
    PYTHONPATH=.ordo/gen/python python3 examples/python/place_order.py [host:port]
"""

import os
import sys
import time

import grpc

from ordo.order.v1 import order_pb2, order_pb2_grpc


def main() -> int:
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ORDO_ORDER_ADDR", "127.0.0.1:50051")
    with grpc.insecure_channel(target) as channel:
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
