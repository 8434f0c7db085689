// The token budget beside the request quota (TOKEN_LIMIT), and in scaled mode the upstream
// bill: what `chatlimit model` says it generated for you, read from its ledger through nginx
// (/model/v1/ledger), against your budget. Under Redis it never passes the budget; under
// memory every replica counts your tokens alone, and the card says so.

import { request } from "./api.js";

const number = (n) => Number(n).toLocaleString("en");

export class Tokens {
  // ui: {card, meter, text, bill, billText, billVerdict}
  constructor(ui) {
    this.ui = ui;
    this.limit = 0;
  }

  // tokens: {limit, remaining, ...} from /api/quota, the stream's meta and done events or a
  // 429; null when TOKEN_LIMIT is off; undefined: this answer said nothing about tokens.
  set(tokens) {
    if (tokens === undefined) return;
    const { ui } = this;
    ui.card.hidden = !tokens;
    if (!tokens || tokens.remaining === undefined) return;
    this.limit = tokens.limit;
    ui.meter.max = Math.max(1, tokens.limit);
    ui.meter.low = tokens.limit * 0.2;
    ui.meter.high = tokens.limit / 2;
    ui.meter.optimum = tokens.limit;
    ui.meter.value = tokens.remaining;
    ui.text.textContent = `${number(tokens.remaining)} of ${number(tokens.limit)} tokens left`;
  }

  // The model's bill for `user`, in scaled mode only (single mode has no ledger route).
  async bill(user, scaled) {
    const { ui } = this;
    if (!scaled || !user || !this.limit) { ui.bill.hidden = true; return; }
    const res = await request("/model/v1/ledger");
    if (!res.ok || !res.body || !res.body.users) { ui.bill.hidden = true; return; }
    const account = res.body.users[user] || { prompt_tokens: 0, completion_tokens: 0 };
    const billed = account.prompt_tokens + account.completion_tokens;
    ui.bill.hidden = false;
    ui.billText.textContent = `The model generated ${number(billed)} tokens for you (prompt and reply), against a budget of ${number(this.limit)}.`;
    const over = billed > this.limit;
    ui.billVerdict.className = `verdict ${over ? "verdict-bad" : "verdict-good"}`;
    ui.billVerdict.textContent = over
      ? `Over budget by ${number(billed - this.limit)}: each replica counts your tokens alone, so the bill can reach one budget per replica.`
      : `Within budget: every replica reserves from one shared count, so the bill cannot pass it.`;
  }
}
