// LeadRelay console: the little behaviour htmx does not cover. No inline script anywhere (CSP).
(() => {
  "use strict";

  async function copyFrom(button) {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Clipboard API refused (insecure origin, permissions): select the text instead.
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
    const label = button.querySelector("[data-copy-label]");
    if (label) {
      label.textContent = "Copied";
      button.classList.add("is-done");
      window.setTimeout(() => {
        label.textContent = "Copy";
        button.classList.remove("is-done");
      }, 2000);
    }
  }

  // An upload over the server's limit is refused here, before it is sent.
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.dataset.maxBytes) {
      return;
    }
    const limit = Number(input.dataset.maxBytes);
    const file = input.files && input.files[0];
    const tooLarge = file && file.size > limit;
    input.setCustomValidity(
      tooLarge ? `The file is larger than ${Math.round(limit / 1048576)} MB.` : "",
    );
    if (tooLarge) input.reportValidity();
  });

  document.addEventListener("click", (event) => {
    const copy = event.target.closest("[data-copy]");
    if (copy) {
      copyFrom(copy);
      return;
    }
    const dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) {
      const notice = dismiss.closest(".notice");
      if (notice) notice.remove();
    }
  });
})();
