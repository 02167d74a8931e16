// Passkey ceremonies in the browser: ask the register for options, let the authenticator answer, send the answer
// back. The browser's own JSON helpers (parse*OptionsFromJSON, toJSON) do the base64url work.

async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || String(response.status));
  return data;
}

export function supported() {
  return typeof window.PublicKeyCredential === "function"
    && typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function";
}

export async function signIn() {
  const { ceremony, options } = await postJSON("/app/signin/options", {});
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
  const credential = await navigator.credentials.get({ publicKey });
  return postJSON("/app/signin/verify", { ceremony, credential: credential.toJSON() });
}

export async function enrol(base) {
  const { ceremony, options } = await postJSON(`${base}/options`, {});
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
  const credential = await navigator.credentials.create({ publicKey });
  return postJSON(`${base}/verify`, { ceremony, credential: credential.toJSON() });
}

// Wires a button to a ceremony: its data-* attributes hold the texts in the page's language.
export function wire(button, status, run) {
  if (!supported()) {
    status.textContent = button.dataset.unsupported;
    button.disabled = true;
    return;
  }
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = button.dataset.working;
    try {
      const { next } = await run();
      window.location.assign(next);
    } catch (error) {
      status.textContent = `${button.dataset.failed} (${error.message || error.name})`;
      button.disabled = false;
    }
  });
}
