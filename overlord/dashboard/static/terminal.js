// The device page's remote sessions. Each card (#shell, #logs) opens a session through the
// dashboard (its form token), then attaches a WebSocket with the browser's session cookie.
// Shell: xterm.js (vendored); keystrokes go as binary frames, the terminal's size as a
// "resize" control frame. Logs: one journal entry (JSON) per binary frame, appended.
// Either way the session's end (exit/close/error) is shown and the end button sends close.
(function () {
  "use strict";
  const MAX_LOG_LINES = 1000;

  function session(card, view) {
    const kind = card.id;
    const openButton = document.getElementById(kind + "-open");
    const endButton = document.getElementById(kind + "-end");
    const state = document.getElementById(kind + "-state");
    let socket = null;

    function attach(path) {
      const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      // The browser sends the session cookie and this page's Origin; nothing else authenticates.
      const ws = new WebSocket(scheme + window.location.host + path);
      ws.binaryType = "arraybuffer";
      socket = ws;
      const shown = view.start(ws);
      let why = null;
      let joined = false;
      ws.onopen = function () {
        state.textContent = "waiting for the device to join (its next poll)";
        endButton.hidden = false;
        openButton.hidden = true;
      };
      ws.onmessage = function (event) {
        if (typeof event.data === "string") {
          const message = JSON.parse(event.data);
          if (message.type === "close") { why = "session ended: " + message.reason; }
          else if (message.type === "error") { why = "error: " + message.reason; }
          else { shown.control(message); }
          return;
        }
        if (!joined) {
          joined = true;
          state.textContent = "connected";
          shown.joined();
        }
        shown.data(new Uint8Array(event.data));
      };
      ws.onclose = function () {
        why = why || "session ended";
        shown.ended(why);
        state.textContent = why;
        endButton.hidden = true;
        openButton.hidden = false;
        socket = null;
      };
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
  }

  const shell = {
    start: function (ws) {
      const box = document.getElementById("shell-terminal");
      box.hidden = false;
      box.innerHTML = "";
      const term = new Terminal({ cursorBlink: true, scrollback: 2000 });
      const fitAddon = new FitAddon.FitAddon();
      term.loadAddon(fitAddon);
      term.open(box);
      const encoder = new TextEncoder();
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
      ws.addEventListener("open", function () {
        window.addEventListener("resize", fit);
        fitAddon.fit();
        term.focus();
      });
      const note = function (text) { term.write("\r\n\x1b[33m[" + text + "]\x1b[0m"); };
      return {
        // The device's first output: its PTY takes this terminal's size now (a resize sent
        // before the device joined never reached it).
        joined: sendSize,
        data: function (bytes) { term.write(bytes); },
        control: function (message) {
          if (message.type === "exit") { note("the shell exited with status " + message.status); }
        },
        ended: function (why) {
          note(why);
          term.write("\r\n");
          window.removeEventListener("resize", fit);
        },
      };
    },
  };

  const logs = {
    start: function () {
      const out = document.getElementById("logs-output");
      out.hidden = false;
      out.textContent = "";
      const decoder = new TextDecoder();
      const add = function (text) {
        const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.appendChild(document.createTextNode(text + "\n"));
        while (out.childNodes.length > MAX_LOG_LINES) { out.removeChild(out.firstChild); }
        if (atBottom) { out.scrollTop = out.scrollHeight; }
      };
      return {
        joined: function () {},
        data: function (bytes) {
          let entry;
          try { entry = JSON.parse(decoder.decode(bytes)); } catch (err) { return; }
          const micros = Number(entry.__REALTIME_TIMESTAMP || 0);
          const when = micros ? new Date(micros / 1000).toISOString().replace("T", " ").slice(0, 19) : "";
          const who = entry._SYSTEMD_UNIT || entry.SYSLOG_IDENTIFIER || "";
          add([when, who, entry.MESSAGE].filter(Boolean).join("  "));
        },
        control: function (message) {
          if (message.type === "dropped") { add("[" + message.count + " lines dropped: this page fell behind]"); }
        },
        ended: function (why) { add("[" + why + "]"); },
      };
    },
  };

  const shellCard = document.getElementById("shell");
  if (shellCard && typeof Terminal !== "undefined") { session(shellCard, shell); }
  const logsCard = document.getElementById("logs");
  if (logsCard) { session(logsCard, logs); }
})();
