// Login page: POST /user/login; the server sets the HttpOnly login cookie.
import { ApiError, post } from "./api.js";
import { byId } from "./dom.js";

const form = byId("login");
const msg = byId("msg");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  msg.className = "status";
  msg.textContent = "Logging in…";
  try {
    await post("/user/login", { mobile: byId("mobile").value, passwd: byId("passwd").value });
    location.assign("/chat/index.shtml");
  } catch (e) {
    msg.className = "status error";
    msg.textContent = e instanceof ApiError ? e.message : "Cannot reach the server";
    button.disabled = false;
  }
});
