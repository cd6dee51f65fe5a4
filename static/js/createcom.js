// Create-group page: optional icon upload, then POST /contact/createcommunity,
// then back to the group list.
import { ApiError, post, upload } from "./api.js";
import { byId } from "./dom.js";

const form = byId("createcom");
const msg = byId("msg");
const iconInput = byId("icon");

iconInput.addEventListener("change", () => {
  const file = iconInput.files?.[0];
  byId("icon-preview").src = file ? URL.createObjectURL(file) : "/asset/images/group.svg";
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  msg.className = "status";
  msg.textContent = "Creating…";
  try {
    const file = iconInput.files?.[0];
    const icon = file ? await upload(file, "icon") : "";
    const res = await post("/contact/createcommunity", {
      name: byId("name").value,
      cate: byId("cate").value,
      memo: byId("memo").value,
      icon,
    });
    sessionStorage.setItem(
      "lanchat_notice",
      `Group "${res.data.name}" created: number ${res.data.id}`,
    );
    location.assign("/chat/index.shtml#groups");
  } catch (e) {
    msg.className = "status error";
    msg.textContent = e instanceof ApiError ? e.message : "Cannot reach the server";
    button.disabled = false;
  }
});
