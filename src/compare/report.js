"use strict";
window.addEventListener("error", (e) => {
  document.body.dataset.errors = (document.body.dataset.errors || "") + e.message + "\n";
  document.getElementById("errors").textContent += "Error while drawing the report: " + e.message;
});
const doc = JSON.parse(document.getElementById("data").textContent);
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
// A cell showing `text` and carrying the exact JSON value, for checking.
function cell(text, value, cls) {
  const td = el("td", {}, text);
  if (value !== undefined) td.dataset.value = value === null ? "" : String(value);
  if (cls) td.className = cls;
  return td;
}
