/* The portal's progressive enhancements; every page works without them.
   - The request form's category drop-down switches the form at once
     (without script, its "Switch form" button posts and the server does).
   - Files: the chosen ones are listed; a screenshot pasted anywhere on the
     form (Ctrl+V) is attached to the file input; files larger than the
     desk's limit are caught before the upload.
   Loaded with `defer`, from 'self' only (the CSP allows no inline script). */
(function () {
  "use strict";

  function switcher(form) {
    var select = form.querySelector("[data-switch]");
    if (!select) return;
    form.querySelectorAll("[data-no-js]").forEach(function (el) { el.hidden = true; });
    var title = document.querySelector("[data-type-title]");
    select.addEventListener("change", function () {
      var type = select.value;
      form.action = "/requests/new/" + type;
      form.querySelectorAll(".type-fields").forEach(function (set) {
        var on = set.getAttribute("data-for") === type;
        set.hidden = !on;
        set.disabled = !on;
      });
      var option = select.options[select.selectedIndex];
      if (title && option) title.textContent = option.getAttribute("data-title") || option.textContent;
      if (option) document.title = document.title.replace(/ · [^·]+ · /, " · " + (option.getAttribute("data-title") || option.textContent) + " · ");
      var hint = form.querySelector("[data-type-hint]");
      if (hint && option) hint.textContent = option.getAttribute("data-hint") || "";
      if (window.history && history.replaceState) history.replaceState(null, "", form.action);
    });
  }

  function files(form) {
    var input = form.querySelector("input[type=file][data-files]");
    if (!input) return;
    var list = form.querySelector("[data-picked]");
    var limit = parseInt(form.getAttribute("data-upload-limit") || "0", 10);
    var canAssign = typeof DataTransfer === "function";

    var lang = document.documentElement.lang || "en";
    function one(x) { return x.toLocaleString(lang, { minimumFractionDigits: 1, maximumFractionDigits: 1 }); }
    function size(n) {
      if (n < 1024) return n + " B";
      if (n < 1048576) return one(n / 1024) + " KB";
      return one(n / 1048576) + " MB";
    }

    function set(fileList) {
      if (!canAssign) return;
      var transfer = new DataTransfer();
      fileList.forEach(function (f) { transfer.items.add(f); });
      input.files = transfer.files;
      show();
    }

    function show() {
      if (!list) return;
      list.textContent = "";
      Array.prototype.forEach.call(input.files, function (file, index) {
        var item = document.createElement("li");
        item.textContent = file.name + " (" + size(file.size) + ") ";
        if (canAssign) {
          var remove = document.createElement("button");
          remove.type = "button";
          remove.className = "link remove";
          remove.textContent = form.getAttribute("data-remove") || "×";
          remove.addEventListener("click", function () {
            var kept = Array.prototype.filter.call(input.files, function (_, i) { return i !== index; });
            set(kept);
          });
          item.appendChild(remove);
        }
        list.appendChild(item);
      });
    }

    input.addEventListener("change", show);

    form.addEventListener("paste", function (event) {
      var items = (event.clipboardData && event.clipboardData.files) || [];
      var pasted = Array.prototype.filter.call(items, function (f) { return f.type.indexOf("image/") === 0; });
      if (!pasted.length || !canAssign) return;
      event.preventDefault();
      var stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
      var current = Array.prototype.slice.call(input.files);
      pasted.forEach(function (f, i) {
        var ext = (f.type.split("/")[1] || "png").replace("jpeg", "jpg").replace(/[^a-z0-9]/g, "");
        var name = "screenshot-" + stamp + (pasted.length > 1 ? "-" + (i + 1) : "") + "." + ext;
        current.push(new File([f], name, { type: f.type }));
      });
      set(current);
    });

    form.addEventListener("submit", function (event) {
      var total = Array.prototype.reduce.call(input.files, function (sum, f) { return sum + f.size; }, 0);
      var field = input.closest(".field");
      var old = field && field.querySelector(".field-error[data-client]");
      if (old) old.remove();
      if (limit && total > limit) {
        event.preventDefault();
        var message = document.createElement("p");
        message.className = "field-error";
        message.setAttribute("data-client", "");
        message.setAttribute("role", "alert");
        message.textContent = form.getAttribute("data-too-large") || "";
        if (field) { field.classList.add("has-error"); field.appendChild(message); }
        input.focus();
      }
    });
  }

  // A field's message from the last submit goes once the field is changed:
  // it no longer describes what is in it.
  document.querySelectorAll("form .field.has-error").forEach(function (field) {
    function clear() {
      field.classList.remove("has-error");
      field.querySelectorAll(".field-error").forEach(function (el) { el.remove(); });
      field.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    }
    field.addEventListener("input", clear, { once: true });
    field.addEventListener("change", clear, { once: true });
  });

  // What only works with script (pasting) is mentioned only with it.
  document.querySelectorAll("[data-js-only]").forEach(function (el) { el.hidden = false; });

  document.querySelectorAll("form[data-request-form], form[data-comment-form]").forEach(function (form) {
    switcher(form);
    files(form);
  });
})();
