// Hold-to-talk: pointer events (mouse, touch and pen alike) drive a
// MediaRecorder; sliding up by 60 px cancels. The recording goes up with its
// real type (webm/ogg/mp4 audio, whichever the browser records).
import { el, toast } from "./dom.js";

const TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];
const CANCEL_DY = 60;
const MIN_MS = 700;
const MAX_MS = 60_000;

function pickType() {
  if (typeof MediaRecorder === "undefined") return undefined;
  return TYPES.find((t) => MediaRecorder.isTypeSupported(t)) ?? "";
}

function extensionOf(type) {
  if (type.includes("ogg")) return "ogg";
  if (type.includes("mp4")) return "m4a";
  return "webm";
}

/** Whether this browser can record voice at all. */
export function canRecord() {
  return pickType() !== undefined && !!navigator.mediaDevices?.getUserMedia;
}

/**
 * Wire `button`: `onRecorded(blob, seconds, fileName)` gets each finished
 * recording that was not cancelled.
 */
export function holdToTalk(button, onRecorded) {
  let rec;
  let stream;
  let startY = 0;
  let started = 0;
  let cancelled = false;
  let maxTimer;
  let holding = false;
  const overlay = el("div", { className: "rec-overlay", hidden: true });

  function setOverlay(text) {
    overlay.textContent = text;
    overlay.hidden = text === "";
    if (!overlay.isConnected) document.body.append(overlay);
  }

  async function begin(event) {
    if (rec || holding) return;
    holding = true;
    event.preventDefault();
    button.setPointerCapture?.(event.pointerId);
    startY = event.clientY;
    cancelled = false;
    const type = pickType();
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      holding = false;
      toast("Microphone not available");
      return;
    }
    if (!holding) {
      // Released before the microphone was ready.
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    const chunks = [];
    rec = new MediaRecorder(stream, type ? { mimeType: type } : {});
    rec.addEventListener("dataavailable", (e) => {
      if (e.data.size > 0) chunks.push(e.data);
    });
    rec.addEventListener("stop", () => {
      const ms = Date.now() - started;
      for (const track of stream.getTracks()) track.stop();
      const mime = rec.mimeType || type || "audio/webm";
      rec = undefined;
      button.classList.remove("recording", "cancel");
      button.textContent = "Hold to talk";
      setOverlay("");
      if (cancelled) return;
      if (ms < MIN_MS) {
        toast("Too short");
        return;
      }
      const blob = new Blob(chunks, { type: mime.split(";")[0] });
      onRecorded(blob, Math.max(1, Math.round(ms / 1000)), `voice.${extensionOf(mime)}`);
    });
    started = Date.now();
    rec.start();
    button.classList.add("recording");
    button.textContent = "Release to send";
    setOverlay("Recording… slide up to cancel");
    maxTimer = setTimeout(finish, MAX_MS);
  }

  function move(event) {
    if (!rec) return;
    const cancel = startY - event.clientY > CANCEL_DY;
    if (cancel === cancelled) return;
    cancelled = cancel;
    button.classList.toggle("cancel", cancel);
    setOverlay(cancel ? "Release to cancel" : "Recording… slide up to cancel");
  }

  function finish() {
    holding = false;
    clearTimeout(maxTimer);
    if (rec && rec.state !== "inactive") rec.stop();
  }

  button.addEventListener("pointerdown", begin);
  button.addEventListener("pointermove", move);
  button.addEventListener("pointerup", finish);
  button.addEventListener("pointercancel", () => {
    cancelled = true;
    finish();
  });
  button.addEventListener("contextmenu", (e) => e.preventDefault());
}
