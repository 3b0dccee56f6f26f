// Kubin's page behaviour that Gradio has no setting for; run once when the page loads (launch(js=...)).
// Everything is delegated from the document, so it also covers components shown later.
(() => {
  const visible = (element) => element.offsetParent !== null;
  const generateButton = (element) => {
    const tab = element.closest(".tabitem");
    return tab ? [...tab.querySelectorAll(".kubin-generate")].find(visible) : undefined;
  };

  // Ctrl+Enter (Cmd+Enter on a Mac) in a text box of a generation tab clicks its Generate button, as in
  // the A1111 web UI. Enter and Shift+Enter add a line: Gradio's own handler (on keypress) would generate
  // on Shift+Enter, so it never sees Enter in these boxes.
  const onEnter = (event) => {
    if (event.key !== "Enter" || event.isComposing) return;
    const box = event.target;
    if (!(box instanceof HTMLTextAreaElement || box instanceof HTMLInputElement)) return;
    const button = generateButton(box);
    if (!button) return;
    if (event.ctrlKey || event.metaKey) {
      event.preventDefault();
      event.stopImmediatePropagation();
      if (event.type === "keydown" && !button.disabled) button.click();
    } else if (box instanceof HTMLTextAreaElement) {
      event.stopImmediatePropagation(); // the browser adds the line
    }
  };
  document.addEventListener("keydown", onEnter, true);
  document.addEventListener("keypress", onEnter, true);

  // On a narrow screen the results (where the progress shows) sit far below Generate: bring them into
  // view when it is clicked, unless their top is already on screen.
  document.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest(".kubin-generate") : null;
    const results = button?.closest(".tabitem")?.querySelector(".kubin-results");
    if (!results || !visible(results)) return;
    const top = results.getBoundingClientRect().top;
    if (top >= 0 && top < window.innerHeight * 0.75) return;
    results.scrollIntoView({ behavior: "smooth", block: "start" });
  });

  // A number typed into a slider's box snaps to the slider's whole-number step, as dragging does: a width
  // of 100 becomes 128 where widths are multiples of 64, 120 frames become 121 where they are 4k+1.
  // Gradio keeps what was typed, which the job then refuses. Fractional steps (guidance) are left alone.
  document.addEventListener(
    "change",
    (event) => {
      const box = event.target;
      if (!(box instanceof HTMLInputElement) || box.dataset.testid !== "number-input") return;
      const step = Number(box.step);
      const least = Number(box.min || 0);
      if (!(step >= 1) || box.value === "" || Number.isNaN(Number(box.value))) return;
      const value = Number(box.value);
      let snapped = least + Math.round((value - least) / step) * step;
      if (box.max !== "" && snapped > Number(box.max)) {
        snapped -= step * Math.ceil((snapped - Number(box.max)) / step);
      }
      snapped = Math.max(snapped, least);
      if (snapped === value) return;
      box.value = String(snapped);
      box.dispatchEvent(new Event("input", { bubbles: true }));
    },
    true,
  );
})();
