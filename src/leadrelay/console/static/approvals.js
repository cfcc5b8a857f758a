// Approval queue and draft review: keyboard shortcuts (a approve, r reject reason, e edit,
// j/k next/previous draft) and "select all" in the queue. Loaded as a file: the CSP forbids
// inline script. Listeners sit on the document, so they keep working after htmx swaps.
(() => {
  "use strict";

  function typing(target) {
    if (!(target instanceof Element)) return false;
    return Boolean(
      target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']"),
    );
  }

  function follow(name) {
    const link = document.querySelector(`a[data-shortcut="${name}"]`);
    if (link) window.location.assign(link.href);
  }

  const actions = {
    a() {
      const button = document.querySelector('button[data-shortcut="approve"]');
      if (button && !button.disabled) button.click();
    },
    r() {
      const reason = document.querySelector('[data-shortcut="reject"]');
      if (!reason) return;
      reason.scrollIntoView({ block: "center" });
      reason.focus();
    },
    e() {
      const edit = document.querySelector('details[data-shortcut="edit"]');
      if (!edit) return;
      edit.open = true;
      const field = edit.querySelector("textarea[name=body]") || edit.querySelector("input, textarea");
      edit.scrollIntoView({ block: "start" });
      if (field) field.focus();
    },
    j() {
      follow("next");
    },
    k() {
      follow("previous");
    },
  };

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.repeat) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) return;
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault(); // the key is a command, not text for a field it focuses
    action();
  });

  // A header checkbox ticks or clears every checkbox of the name it names.
  document.addEventListener("change", (event) => {
    const all = event.target;
    if (!(all instanceof HTMLInputElement) || !all.dataset.selectAll) return;
    const form = all.form || document;
    for (const box of form.querySelectorAll(`input[type=checkbox][name="${all.dataset.selectAll}"]`)) {
      box.checked = all.checked;
    }
  });
})();
