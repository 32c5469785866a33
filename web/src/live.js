// Live updates over Server-Sent Events. EventSource reconnects by itself after a dropped stream; while
// it does, the banner says "reconnecting…". A stream refused outright (closed, e.g. after a 401) is
// reopened here after checking the session.
import { api } from "./api.js";

export class Live {
  constructor({ url, onUpdate, onResync, onStatus }) {
    this.url = url; // () => the stream's URL with the latest cursor
    this.onUpdate = onUpdate;
    this.onResync = onResync;
    this.onStatus = onStatus;
    this.es = null;
    this.timer = null;
    this.stopped = false;
    this.wasDown = false;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  open() {
    if (this.stopped) return;
    const es = new EventSource(this.url());
    this.es = es;
    es.addEventListener("open", () => {
      this.onStatus(true);
      if (this.wasDown) this.onResync(); // anything missed while away
      this.wasDown = false;
    });
    es.addEventListener("update", (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.onUpdate(data);
    });
    es.addEventListener("resync", () => this.onResync());
    es.addEventListener("signed_out", async () => {
      // the session ended (signed out elsewhere, removed, expired): the next API call sends the page to sign-in
      es.close();
      try {
        await api("GET", "/api/session");
      } catch {
        /* the redirect is api()'s */
      }
    });
    es.addEventListener("error", () => {
      if (this.es !== es) return;
      this.wasDown = true;
      this.onStatus(false);
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        clearTimeout(this.timer);
        this.timer = setTimeout(async () => {
          try {
            await api("GET", "/api/session"); // a 401 sends the page to sign-in
          } catch {
            /* the server is away: try the stream again */
          }
          this.open();
        }, 2000);
      }
    });
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
    this.es = null;
  }
}
