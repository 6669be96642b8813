// A notification-socket.io client app, its README's calls unmodified (io.connect(url),
// socket.emit('register', userId, connectionId), socket.on('message', ...)), on the npm
// `socket.io-client`. Used by tests/integration/test_compat_notification_socketio.py.
//
//   node nsio.mjs <url> <userId> <connectionId>
//
// Prints one JSON line per happening on stdout ({"event": "registered"} once it emitted
// register, {"event": "message", "msg": ...} per message, {"event": "disconnect"}) and
// disconnects when stdin closes.
import { io } from "socket.io-client";

const [url, userId, connectionId] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const notificationSocketIo = { url, connectionId };

// The README, step 5.
var socket = io.connect(notificationSocketIo.url);
socket.on('connect', function() {
    socket.emit('register', userId, notificationSocketIo.connectionId);
    say({ event: "registered" });
});
// The README, step 6.
socket.on('message', function(msg) {
    say({ event: "message", msg });
});
socket.on("disconnect", (reason) => say({ event: "disconnect", reason }));
process.stdin.on("end", () => {
  socket.disconnect();
  process.exit(0);
});
process.stdin.resume();
