// The inbox's one script. Every page works without it; it adds:
// - live updates: a server-sent event stream says which conversations changed, and the page
//   reads itself again and swaps in the list, the thread's messages and the title (the draft
//   being typed is never touched);
// - a draft per conversation (kept in this browser), sent with Ctrl/Cmd+Enter;
// - keyboard shortcuts (j/k, Enter, /, r, Esc, ?), never while typing;
// - the reply_by countdown, and opt-in desktop notifications.
"use strict";

(function () {
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  // ---- Live updates -------------------------------------------------------------------------
  let refreshing = false;
  let again = false;
  // Set once a form is sent: the page is going away, and reading it again now would undo
  // what the form did (a thread read again right after "Mark unread").
  let leaving = false;
  let events = null;

  async function refresh() {
    if (leaving) return;
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      const response = await fetch(location.href, {
        headers: document.hidden ? { "X-Inbox-Background": "1" } : {},
        credentials: "same-origin",
      });
      if (response.redirected || !response.ok) {
        // Logged out, or the conversation is gone: the page as it now is.
        location.reload();
        return;
      }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      swap(".list .rows", fresh);
      swap(".list .older", fresh);
      swap(".list .empty", fresh);
      const messages = $(".thread .messages");
      const atBottom = messages && isScrolledToBottom();
      swap(".thread .messages", fresh);
      swap(".thread .thread-head", fresh);
      if (atBottom) scrollToEnd();
      document.title = fresh.title;
    } catch (e) {
      // The hub is restarting: the stream reconnects and says when to try again.
    } finally {
      refreshing = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  // Replaces the element `selector` by the one of `fresh`, keeping focus where it was.
  function swap(selector, fresh) {
    const here = $(selector);
    const there = $(selector, fresh);
    if (here && there) {
      const focused = document.activeElement && here.contains(document.activeElement)
        ? document.activeElement.getAttribute("href") : null;
      here.replaceWith(document.importNode(there, true));
      if (focused) {
        const again = $$("a", $(selector)).find((a) => a.getAttribute("href") === focused);
        if (again) again.focus();
      }
    } else if (here && !there) {
      here.remove();
    } else if (!here && there && selector === ".list .rows") {
      $(".list").appendChild(document.importNode(there, true));
    }
  }

  function isScrolledToBottom() {
    const thread = $(".thread");
    return !thread || thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
  }

  function scrollToEnd() {
    const thread = $(".thread");
    if (thread) thread.scrollTop = thread.scrollHeight;
  }

  function listen() {
    if (!window.EventSource) return;
    events = new EventSource("/inbox/events");
    events.addEventListener("change", (event) => {
      let batch = {};
      try {
        batch = JSON.parse(event.data);
      } catch (e) {
        /* a change all the same */
      }
      refresh();
      notify(batch);
    });
    events.addEventListener("resync", () => refresh());
  }

  // ---- Notifications (opt-in) ---------------------------------------------------------------
  function notify(batch) {
    if (!batch.new_messages || !document.hidden) return;
    if (!window.Notification || Notification.permission !== "granted") return;
    const n = batch.new_messages;
    new Notification(n === 1 ? "A new message" : n + " new messages", { body: "pdchannels inbox" });
  }

  function offerNotifications() {
    const button = $(".notify");
    if (!button || !window.Notification || Notification.permission !== "default") return;
    button.hidden = false;
    button.addEventListener("click", async () => {
      await Notification.requestPermission();
      button.hidden = true;
    });
  }

  // ---- Drafts and the composer --------------------------------------------------------------
  function composer() {
    const form = $(".composer");
    const box = form && $("textarea", form);
    if (!box) return;
    // One draft per conversation: its key is the thread's path, so a draft never follows the
    // person into another conversation.
    const key = "pdchannels-draft:" + location.pathname;
    // The text being sent, until the page that answers: a send the hub could not even read
    // (too long) comes back without it, and it is put back in the box.
    const sending = "pdchannels-sending:" + location.pathname;
    const unsent = sessionStorage.getItem(sending);
    sessionStorage.removeItem(sending);
    const refused = $(".thread .error");
    if (!box.value && unsent && refused) box.value = unsent;
    if (!box.value) box.value = localStorage.getItem(key) || "";
    // A refused text is the draft again, so that a reload keeps it too.
    else if (refused) localStorage.setItem(key, box.value);
    box.addEventListener("input", () => {
      if (box.value) localStorage.setItem(key, box.value);
      else localStorage.removeItem(key);
    });
    form.addEventListener("submit", () => {
      localStorage.removeItem(key);
      if (box.value) sessionStorage.setItem(sending, box.value);
    });
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        if (box.value.trim()) form.requestSubmit();
      }
    });
  }

  // The reply_by line counts down; once it passes the page reloads to offer templates.
  function countdown() {
    const line = $(".reply-by:not(.passed)");
    if (!line) return;
    const by = Date.parse(line.dataset.replyBy);
    if (!by) return;
    const time = $("time", line);
    const tick = () => {
      const minutes = Math.floor((by - Date.now()) / 60000);
      if (minutes < 0) {
        location.reload();
        return;
      }
      const h = Math.floor(minutes / 60);
      const text = minutes < 1 ? "Less than a minute" : h >= 24
        ? Math.floor(h / 24) + " d " + (h % 24) + " h" : h > 0
          ? h + " h" + (minutes % 60 ? " " + (minutes % 60) + " min" : "") : minutes + " min";
      time.textContent = text + " left to answer in free text.";
    };
    tick();
    setInterval(tick, 30000);
  }

  // ---- Keyboard -----------------------------------------------------------------------------
  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function rowLinks() {
    return $$(".list .row a");
  }

  function move(step) {
    const links = rowLinks();
    if (!links.length) return;
    let at = links.indexOf(document.activeElement);
    if (at < 0) at = links.findIndex((a) => a.getAttribute("aria-current") === "page");
    const next = links[Math.min(links.length - 1, Math.max(0, at < 0 ? 0 : at + step))];
    next.focus();
    next.scrollIntoView({ block: "nearest" });
  }

  function help(show) {
    const dialog = $(".help");
    if (!dialog) return;
    dialog.hidden = !show;
    if (show) $(".help-close", dialog).focus();
  }

  function keyboard() {
    const open = $(".help-open");
    if (open) {
      open.hidden = false;
      open.addEventListener("click", () => help(true));
    }
    const close = $(".help-close");
    if (close) close.addEventListener("click", () => help(false));
    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "Escape") {
        if (!$(".help").hidden) return help(false);
        if (typing(event.target)) return event.target.blur();
        const back = $(".back");
        if (back && $(".panes.has-thread")) location.href = back.href;
        return;
      }
      if (typing(event.target)) return;
      switch (event.key) {
        case "j": move(1); break;
        case "k": move(-1); break;
        case "/": event.preventDefault(); $(".filters input[name=q]").focus(); break;
        case "r": {
          const box = $(".composer textarea");
          if (box) {
            event.preventDefault();
            box.focus();
          }
          break;
        }
        case "?": help($(".help").hidden); break;
        default: return;
      }
    });
  }

  // A page answering a form (a reply that was refused) has the form's address: the thread's
  // own address, with the list's filters, is the one to read again, reload and link.
  function settleAddress() {
    const thread = $("main.thread[data-address]");
    if (thread && /\/(reply|older|unread|close|reopen|delete)$/.test(location.pathname)) {
      history.replaceState(null, "", thread.dataset.address);
    }
  }

  document.addEventListener("submit", () => {
    leaving = true;
    if (events) events.close();
  });

  document.addEventListener("DOMContentLoaded", () => {
    settleAddress();
    composer();
    countdown();
    keyboard();
    offerNotifications();
    scrollToEnd();
    listen();
  });
})();
