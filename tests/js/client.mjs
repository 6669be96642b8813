// A socket.io client as a browser app would run it: the npm package `socket.io-client`
// (long-polling first, then upgraded to WebSocket). Used by tests/integration/test_realtime_js.py.
//
//   node client.mjs <url> <token> [transports, e.g. polling or polling,websocket]
//
// Prints one JSON line per happening on stdout ({"event": "connected" | "connect_error" |
// "transport" | <any event the server emits>, ...}) and disconnects when stdin closes.
import { io } from "socket.io-client";

const [url, token, transports] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const options = { auth: { token }, reconnection: false };
if (transports) options.transports = transports.split(",");
const socket = io(url, options);

socket.on("connect", () => {
  say({ event: "connected", transport: socket.io.engine.transport.name });
  socket.io.engine.on("upgrade", (t) => say({ event: "transport", transport: t.name }));
});
socket.on("connect_error", (err) => {
  say({ event: "connect_error", message: err.message });
  process.exit(2);
});
socket.onAny((event, ...args) => say({ event, args }));
process.stdin.on("end", () => {
  socket.disconnect();
  process.exit(0);
});
process.stdin.resume();
