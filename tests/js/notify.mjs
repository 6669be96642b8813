// A socket.io client that receives pushgate's `notification` events and acks them, as a web app
// would: the npm package `socket.io-client`. Used by tests/integration/test_realtime_delivery.py.
//
//   node notify.mjs <url> <token>
//
// Prints one JSON line per happening on stdout ({"event": "connected"} once connected, then
// {"event": "notification", "data": <the event>} for each notification, acked at once) and
// disconnects when stdin closes.
import { io } from "socket.io-client";

const [url, token] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const socket = io(url, { auth: { token }, reconnection: false, transports: ["websocket"] });

socket.on("connect", () => say({ event: "connected", sid: socket.id }));
socket.on("connect_error", (err) => {
  say({ event: "connect_error", message: err.message });
  process.exit(2);
});
socket.on("notification", (event, ack) => {
  say({ event: "notification", data: event });
  ack();  // socket.io's acknowledgement: pushgate records the delivery as delivered
});
process.stdin.on("end", () => {
  socket.disconnect();
  process.exit(0);
});
process.stdin.resume();
