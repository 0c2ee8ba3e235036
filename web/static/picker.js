// Search boxes for long lists (agencies, service points, portals): an <input data-picker-url>
// suggests the choices matching what is typed, from the pages' JSON endpoint; picking one puts
// its value (an id) in the input and its name beside it. Without script the input still takes
// an id or an exact name, which the server checks. No build step, no library.
(function () {
  "use strict";

  function setup(input) {
    var list = document.getElementById(input.getAttribute("aria-controls"));
    var chosen = input.parentNode.querySelector(".picker-chosen");
    var url = input.getAttribute("data-picker-url");
    var timer = null, asked = 0, active = -1, shown = [];

    function close() {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
    }

    function highlight(i) {
      var options = list.querySelectorAll("[role=option]");
      if (!options.length) { return; }
      active = (i + options.length) % options.length;
      Array.prototype.forEach.call(options, function (el, n) { el.setAttribute("aria-selected", n === active ? "true" : "false"); });
      input.setAttribute("aria-activedescendant", options[active].id);
      options[active].scrollIntoView({ block: "nearest" });
    }

    function pick(choice) {
      input.value = choice.value;
      chosen.textContent = choice.label;
      close();
    }

    function note(text) {
      var li = document.createElement("li");
      li.className = "picker-note";
      li.textContent = text;
      list.appendChild(li);
    }

    function render(body) {
      list.textContent = "";
      shown = body.choices;
      shown.forEach(function (choice, n) {
        var li = document.createElement("li");
        li.id = list.id + "-" + n;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.setAttribute("data-value", choice.value);
        li.textContent = choice.label;
        li.addEventListener("mousedown", function (e) { e.preventDefault(); pick(choice); });
        list.appendChild(li);
      });
      if (!shown.length) { note("Nothing registered matches “" + input.value.trim() + "”."); }
      if (body.more) { note("More match: type more of the name or id."); }
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      active = -1;
    }

    function search() {
      var mine = ++asked;
      fetch(url + "?q=" + encodeURIComponent(input.value.trim()), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : { choices: [], more: false }; })
        .then(function (body) { if (mine === asked && document.activeElement === input) { render(body); } })
        .catch(function () {});
    }

    input.addEventListener("input", function () {
      chosen.textContent = "";
      window.clearTimeout(timer);
      timer = window.setTimeout(search, 150);
    });
    input.addEventListener("focus", search);
    input.addEventListener("blur", function () { asked++; close(); });
    input.addEventListener("keydown", function (e) {
      if (list.hidden) {
        if (e.key === "ArrowDown") { e.preventDefault(); search(); }
        return;
      }
      if (e.key === "ArrowDown") { e.preventDefault(); highlight(active + 1); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight(active - 1); }
      else if (e.key === "Enter" && active >= 0 && shown[active]) { e.preventDefault(); pick(shown[active]); }
      else if (e.key === "Escape") { e.preventDefault(); close(); }
    });
  }

  document.querySelectorAll("input[data-picker-url]").forEach(setup);
})();
