// The device page's remote shell: xterm.js (vendored) on the operator side of a session.
// Keystrokes go as binary frames, a resize of the element as a "resize" control frame;
// the device's output arrives as binary frames, the session's end as exit/close/error.
(function () {
  "use strict";
  const card = document.getElementById("shell");
  if (!card || typeof Terminal === "undefined") { return; }
  const openButton = document.getElementById("shell-open");
  const endButton = document.getElementById("shell-end");
  const state = document.getElementById("shell-state");
  const box = document.getElementById("shell-terminal");
  const encoder = new TextEncoder();
  let socket = null;

  function ended(term, fit, why) {
    term.write("\r\n\x1b[33m[" + why + "]\x1b[0m\r\n");
    state.textContent = why;
    endButton.hidden = true;
    openButton.hidden = false;
    window.removeEventListener("resize", fit);
    socket = null;
  }

  function control(term, message) {
    if (message.type === "exit") {
      term.write("\r\n\x1b[33m[the shell exited with status " + message.status + "]\x1b[0m");
    } else if (message.type === "close" || message.type === "error") {
      return message.type === "error" ? "error: " + message.reason : "session ended: " + message.reason;
    }
    return null;
  }

  function attach(path) {
    box.hidden = false;
    box.innerHTML = "";
    const term = new Terminal({ cursorBlink: true, convertEol: false, scrollback: 2000 });
    const fitAddon = new FitAddon.FitAddon();
    term.loadAddon(fitAddon);
    term.open(box);
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    // The browser sends the session cookie and this page's Origin; nothing else authenticates.
    const ws = new WebSocket(scheme + window.location.host + path);
    ws.binaryType = "arraybuffer";
    socket = ws;
    let why = null;
    let joined = false;
    const fit = function () { fitAddon.fit(); };
    const sendSize = function () {
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
      }
    };
    term.onResize(sendSize);
    term.onData(function (data) {
      if (ws.readyState === WebSocket.OPEN) { ws.send(encoder.encode(data)); }
    });
    ws.onopen = function () {
      state.textContent = "waiting for the device to join (its next poll)";
      endButton.hidden = false;
      openButton.hidden = true;
      window.addEventListener("resize", fit);
      fitAddon.fit();
      term.focus();
    };
    ws.onmessage = function (event) {
      if (typeof event.data === "string") {
        why = control(term, JSON.parse(event.data)) || why;
      } else {
        if (!joined) {  // the device's first output: its PTY takes this terminal's size now
          joined = true;
          state.textContent = "connected";
          sendSize();
        }
        term.write(new Uint8Array(event.data));
      }
    };
    ws.onclose = function () { ended(term, fit, why || "session ended"); };
  }

  openButton.addEventListener("click", async function () {
    openButton.disabled = true;
    state.textContent = "opening a session";
    try {
      const resp = await fetch(card.dataset.open, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ csrf: card.dataset.csrf }),
      });
      const body = await resp.json();
      if (!resp.ok) { state.textContent = "refused: " + body.detail; return; }
      attach(body.attach);
    } catch (err) {
      state.textContent = "the Overlord did not answer: " + err;
    } finally {
      openButton.disabled = false;
    }
  });

  endButton.addEventListener("click", function () {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "close", reason: "ended from the dashboard" }));
    }
  });
})();
