import assert from "node:assert/strict";
import {
  acceptKey,
  headEnd,
  header,
  isChatUpgrade,
  parseRequestHead,
  websocketKey,
} from "../lib/ws/request_head.ts";

const encode = (text: string) => new TextEncoder().encode(text);

const UPGRADE = "GET /chat?token=abc HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: WebSocket\r\n" +
  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
  "Sec-WebSocket-Version: 13\r\nX-Many: a\r\nx-many:  b \r\n\r\n";

Deno.test("parseRequestHead() reads the request line and lower-cased, trimmed fields", () => {
  const head = parseRequestHead(encode(UPGRADE));
  assert.ok(head);
  assert.equal(head.method, "GET");
  assert.equal(head.target, "/chat?token=abc");
  assert.deepEqual(head.headers[0], ["host", "127.0.0.1:8080"]);
  assert.equal(header(head, "x-many"), "a, b");
  assert.equal(header(head, "cookie"), undefined);
  assert.equal(isChatUpgrade(head), true);
  assert.equal(headEnd(encode(UPGRADE), UPGRADE.length), UPGRADE.length);
});

Deno.test("parseRequestHead() refuses what the HTTP server should answer instead", () => {
  const bad = [
    UPGRADE.replace("abc", "ab\u00e9"), // not ASCII (UTF-8 bytes over 0x7f)
    UPGRADE.replace("abc", "ab\0c"), // NUL
    UPGRADE.replace("HTTP/1.1", "HTTP/1.0"),
    UPGRADE.replace("GET /chat", "G(T /chat"), // method not a token
    UPGRADE.replace("/chat?", "chat?"), // target not origin-form
    UPGRADE.replace("X-Many: a", "X Many: a"), // field name not a token
    UPGRADE.replace("\r\nX-Many: a", "\r\n folded"), // obsolete line folding
    UPGRADE.replace("HTTP/1.1", "HTTP/1.1 extra"),
  ];
  for (const text of bad) {
    assert.equal(parseRequestHead(encode(text)), undefined, JSON.stringify(text.slice(0, 40)));
  }
});

Deno.test("isChatUpgrade() and websocketKey() want GET /chat, a websocket upgrade and a v13 key", () => {
  const plain = parseRequestHead(encode("GET /chat HTTP/1.1\r\nHost: x\r\n\r\n"))!;
  assert.equal(isChatUpgrade(plain), false);
  const other = parseRequestHead(encode(UPGRADE.replace("/chat?", "/chats?")))!;
  assert.equal(isChatUpgrade(other), false);
  const key = "dGhlIHNhbXBsZSBub25jZQ==";
  assert.equal(
    websocketKey(new Headers({ "sec-websocket-key": key, "sec-websocket-version": "13" })),
    key,
  );
  assert.equal(
    websocketKey(new Headers({ "sec-websocket-key": key, "sec-websocket-version": "8" })),
    undefined,
  );
  assert.equal(
    websocketKey(new Headers({ "sec-websocket-key": "short", "sec-websocket-version": "13" })),
    undefined,
  );
  // RFC 6455 §1.3's example.
  assert.equal(acceptKey(key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});
