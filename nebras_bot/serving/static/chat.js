// Nebras web chat: talks to POST v1/chat and POST v1/feedback of the server that serves this page.
(function () {
  "use strict";
  var API_BASE = new URL(".", window.location.href).href;   // works behind a path prefix too
  var SENDER_KEY = "nebras.sender_id";
  var TOKEN_KEY = "nebras.api_token";
  var list = document.getElementById("messages");
  var form = document.getElementById("composer");
  var input = document.getElementById("message");
  var sendButton = document.getElementById("send");
  var statusLine = document.getElementById("status");
  var tokenInput = document.getElementById("token");

  function newSenderId() {
    var random = (window.crypto && crypto.getRandomValues)
      ? Array.prototype.map.call(crypto.getRandomValues(new Uint8Array(8)), function (b) {
          return ("0" + b.toString(16)).slice(-2); }).join("")
      : String(Math.random()).slice(2, 18);
    return "web-" + random;
  }

  var senderId = sessionStorage.getItem(SENDER_KEY) || newSenderId();
  sessionStorage.setItem(SENDER_KEY, senderId);
  tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
  tokenInput.addEventListener("change", function () { sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim()); });

  function headers() {
    var h = { "Content-Type": "application/json" };
    var token = tokenInput.value.trim();
    if (token) { h.Authorization = "Bearer " + token; }
    return h;
  }

  function setStatus(text, isError) {
    statusLine.textContent = text || "";
    statusLine.className = "chat__status" + (isError ? " chat__status--error" : "");
  }

  function errorText(response, body) {
    var detail = body && body.detail;
    if (Array.isArray(detail)) { detail = detail.map(function (d) { return d.msg; }).join("; "); }
    return "Error " + response.status + (detail ? ": " + detail : "");
  }

  function post(path, payload) {
    return fetch(API_BASE + path, { method: "POST", headers: headers(), body: JSON.stringify(payload) })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          if (!response.ok) { throw new Error(errorText(response, body)); }
          return body;
        });
      });
  }

  function addUserMessage(text) {
    var item = document.createElement("li");
    item.className = "msg msg--user";
    var bubble = document.createElement("div");
    bubble.className = "msg__bubble";
    bubble.textContent = text;
    item.appendChild(bubble);
    list.appendChild(item);
    item.scrollIntoView({ block: "end" });
  }

  function feedbackButton(label, rating, message, modelVersion, meta) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "feedback feedback--" + rating;
    button.textContent = label;
    button.title = rating === "up" ? "This reply helped" : "This reply did not help";
    button.addEventListener("click", function () {
      var buttons = meta.querySelectorAll("button.feedback");
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
      post("v1/feedback", { sender_id: senderId, rating: rating, message_text: message.text,
                            generated: !!message.generated, model_version: modelVersion })
        .then(function (body) {
          button.classList.add("feedback--chosen");
          meta.setAttribute("data-feedback", rating);
          meta.setAttribute("data-feedback-id", body && body.id != null ? String(body.id) : "");
          setStatus("Thanks for your feedback.");
        })
        .catch(function (error) {
          Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
          setStatus(error.message, true);
        });
    });
    return button;
  }

  function addBotMessage(message, modelVersion) {
    var item = document.createElement("li");
    item.className = "msg msg--bot";
    item.setAttribute("data-generated", message.generated ? "true" : "false");
    var bubble = document.createElement("div");
    bubble.className = "msg__bubble";
    bubble.textContent = message.text || "";
    item.appendChild(bubble);
    if (message.image) {
      var image = document.createElement("img");
      image.className = "msg__image";
      image.alt = "";
      image.src = message.image;
      item.appendChild(image);
    }
    if (message.buttons && message.buttons.length) {
      var row = document.createElement("div");
      row.className = "msg__buttons";
      message.buttons.forEach(function (b) {
        var choice = document.createElement("button");
        choice.type = "button";
        choice.textContent = b.title;
        choice.addEventListener("click", function () { send(b.payload, b.title); });
        row.appendChild(choice);
      });
      item.appendChild(row);
    }
    var meta = document.createElement("div");
    meta.className = "msg__meta";
    var badge = document.createElement("span");
    badge.className = "badge " + (message.generated ? "badge--generated" : "badge--template");
    badge.textContent = message.generated ? "generated" : "template";
    badge.title = message.generated ? "written by the language model" + (modelVersion ? " " + modelVersion : "")
                                    : "the assistant's templated reply";
    meta.appendChild(badge);
    if (message.text) {
      meta.appendChild(feedbackButton("Helpful", "up", message, modelVersion, meta));
      meta.appendChild(feedbackButton("Not helpful", "down", message, modelVersion, meta));
    }
    item.appendChild(meta);
    list.appendChild(item);
    item.scrollIntoView({ block: "end" });
  }

  function send(payload, shown) {
    var text = (payload || "").trim();
    if (!text) { return; }
    addUserMessage(shown || text);
    input.value = "";
    sendButton.disabled = true;
    setStatus("Nebras is typing…");
    post("v1/chat", { sender_id: senderId, message: text })
      .then(function (body) {
        setStatus("");
        if (!body.messages.length) { setStatus("(no reply)"); }
        body.messages.forEach(function (m) { addBotMessage(m, body.model_version); });
      })
      .catch(function (error) { setStatus(error.message, true); })
      .then(function () { sendButton.disabled = false; input.focus(); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    send(input.value);
  });
  input.focus();
})();
