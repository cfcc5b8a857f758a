// Drafting forms: what is offered follows the channel. In a form marked `data-channel-form`,
// template options with a `data-channel` show only for the chosen channel, and fields marked
// `data-channel-only="email"` (a template's subject) show, and are sent, only for it.
// Without this script every option shows and the server refuses a mismatch with the reason.
(() => {
  "use strict";
  if (window.leadrelayDrafting) return; // htmx may insert this script again with a fragment
  window.leadrelayDrafting = true;

  function sync(form) {
    const picker = form.querySelector("select[name=channel]");
    if (!picker) return;
    const channel = picker.value;
    for (const select of form.querySelectorAll("select[name=template]")) {
      for (const option of select.querySelectorAll("option[data-channel]")) {
        const other = option.dataset.channel !== channel;
        option.hidden = other;
        option.disabled = other;
        if (other && option.selected) select.value = "";
      }
      for (const group of select.querySelectorAll("optgroup")) {
        group.hidden = !group.querySelector("option:not([hidden])");
      }
    }
    for (const field of form.querySelectorAll("[data-channel-only]")) {
      const shown = field.dataset.channelOnly === channel;
      field.hidden = !shown;
      for (const input of field.querySelectorAll("input, textarea, select")) {
        input.disabled = !shown;
      }
    }
  }

  function syncAll(root) {
    const scope = root && root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches("form[data-channel-form]")) sync(scope);
    for (const form of scope.querySelectorAll("form[data-channel-form]")) sync(form);
  }

  // The built-in template being previewed stays marked in the list.
  function markPreviewed(name) {
    for (const row of document.querySelectorAll("tr[data-builtin]")) {
      row.classList.toggle("is-selected", row.dataset.builtin === name);
    }
  }

  document.addEventListener("change", (event) => {
    const target = event.target;
    if (!(target instanceof HTMLSelectElement)) return;
    if (target.name === "preview") {
      markPreviewed(target.value);
      return;
    }
    if (target.name !== "channel") return;
    const form = target.closest("form[data-channel-form]");
    if (form) sync(form);
  });
  document.addEventListener("htmx:load", (event) => syncAll(event.target));
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => syncAll(document));
  } else {
    syncAll(document);
  }
})();
