// Places an order with the TypeScript client (protobuf-es stubs from
// `buf generate`, Connect's gRPC transport), follows it to its terminal
// status, and prints it. `just clients` generates the stubs and type-checks
// this file.
//
// ORDO_ORDER_URL=https://… uses TLS; ORDO_TLS_CA_FILE names the CA that
// issued the server's certificate, and ORDO_TLS_CERT_FILE / ORDO_TLS_KEY_FILE
// a client certificate for mutual TLS.
import { readFileSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { OrderService, OrderStatus } from "../../.ordo/gen/ts/ordo/order/v1/order_pb.js";

async function main(): Promise<void> {
  const file = (name: string): Buffer | undefined => {
    const path = process.env[name];
    return path ? readFileSync(path) : undefined;
  };
  const transport = createGrpcTransport({
    baseUrl: process.env.ORDO_ORDER_URL ?? "http://127.0.0.1:50051",
    nodeOptions: {
      ca: file("ORDO_TLS_CA_FILE"),
      cert: file("ORDO_TLS_CERT_FILE"),
      key: file("ORDO_TLS_KEY_FILE"),
    },
  });
  const orders = createClient(OrderService, transport);
  const placed = await orders.placeOrder(
    {
      customerId: "typescript-example",
      currency: "EUR",
      lines: [{ sku: "BOOK-DDIA", quantity: 1, unitPriceMinor: 4599n }],
      idempotencyKey: `typescript-example-${process.pid}`,
    },
    { headers: { "x-correlation-id": "typescript-example" } },
  );
  const orderId = placed.order?.orderId ?? "";
  console.log(`placed ${orderId}`);
  for (let i = 0; i < 300; i++) {
    const { order } = await orders.getOrder({ orderId });
    if (order && order.status !== OrderStatus.PENDING) {
      console.log(`order ${orderId} is ${OrderStatus[order.status]} ${order.statusReason}`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("the order stayed PENDING for 30 s");
}

void main();
