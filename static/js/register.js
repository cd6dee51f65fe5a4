// Register page: register (which logs in through the cookie), then upload the
// chosen avatar and save it with /user/update (uploads need a login).
import { ApiError, post, upload } from "./api.js";
import { byId } from "./dom.js";

const form = byId("register");
const msg = byId("msg");
const avatarInput = byId("avatar");
const preview = byId("avatar-preview");
let previewUrl;

avatarInput.addEventListener("change", () => {
  const file = avatarInput.files?.[0];
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = file ? URL.createObjectURL(file) : undefined;
  preview.src = previewUrl ?? "/asset/images/avatar0.svg";
});

function show(text, error = false) {
  msg.className = error ? "status error" : "status";
  msg.textContent = text;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const passwd = byId("passwd").value;
  if (passwd !== byId("confirm").value) {
    show("The two passwords differ", true);
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  show("Registering…");
  try {
    await post("/user/register", {
      mobile: byId("mobile").value,
      passwd,
      nickname: byId("nickname").value,
      sex: byId("sex").value,
      memo: byId("memo").value,
    });
  } catch (e) {
    show(e instanceof ApiError ? e.message : "Cannot reach the server", true);
    button.disabled = false;
    return;
  }
  const file = avatarInput.files?.[0];
  if (file) {
    try {
      show("Uploading the avatar…");
      const url = await upload(file, "avatar");
      await post("/user/update", { avatar: url });
    } catch (e) {
      // The account exists; the avatar can be set again later.
      sessionStorage.setItem("lanchat_notice", `Avatar not saved: ${e.message}`);
    }
  }
  location.assign("/chat/index.shtml");
});
