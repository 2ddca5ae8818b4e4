// Sorting and filtering for the book's generated tables (the claims dashboard, the papers in scope).
// A table opts in with the `data-filterable` attribute; its controls sit in the `.rb-filter`
// block whose `data-table` names the table's id. No library and no network are needed.
(function () {
  "use strict";

  function cellKey(row, index, kind) {
    const cell = row.cells[index];
    const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
    if (kind === "number") {
      const number = parseFloat(raw);
      return Number.isNaN(number) ? Infinity : number;
    }
    return raw.toLowerCase();
  }

  function sortBy(table, header, index) {
    const kind = header.dataset.sort;
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    for (const other of table.tHead.rows[0].cells) {
      other.setAttribute("aria-sort", "none");
    }
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = cellKey(a, index, kind);
      const y = cellKey(b, index, kind);
      let order = 0;
      if (x < y) {
        order = -1;
      } else if (x > y) {
        order = 1;
      }
      return ascending ? order : -order;
    });
    for (const row of rows) {
      body.appendChild(row);
    }
  }

  function applyFilters(table, controls) {
    const text = controls.querySelector('[data-filter="text"]');
    const needle = text ? text.value.trim().toLowerCase() : "";
    const selects = controls.querySelectorAll("select[data-filter]");
    let visibleCount = 0;
    const rows = table.tBodies[0].rows;
    for (const row of rows) {
      let visible = !needle || row.textContent.toLowerCase().includes(needle);
      for (const select of selects) {
        if (select.value && row.dataset[select.dataset.filter] !== select.value) {
          visible = false;
        }
      }
      row.hidden = !visible;
      if (visible) {
        visibleCount += 1;
      }
    }
    const counter = controls.querySelector(".rb-shown");
    if (counter) {
      counter.textContent = visibleCount + " of " + rows.length + " rows shown";
    }
  }

  function setUp(table) {
    table.tHead.rows[0].querySelectorAll("th[data-sort]").forEach(function (header, index) {
      const button = header.querySelector("button") || header;
      button.addEventListener("click", function () {
        sortBy(table, header, index);
      });
    });
    const controls = document.querySelector('.rb-filter[data-table="' + table.id + '"]');
    if (!controls) {
      return;
    }
    controls.querySelectorAll("[data-filter]").forEach(function (control) {
      control.addEventListener("input", function () {
        applyFilters(table, controls);
      });
    });
    applyFilters(table, controls);
  }

  function start() {
    document.querySelectorAll("table[data-filterable]").forEach(setUp);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
