// Hazard page: officers find hazards, issue notices, recheck and penalise; units see theirs and upload proof.
import { applyI18n, bindLangToggle, onLangChange, t } from "./i18n.js";
import "./hazards_i18n.js"; // the page's strings, merged into i18n.js's table at import
import "./report_i18n.js"; // the link to the triage page
import { can, connectLive, fmtTime, get, h, loadMe, logout, now, post, toast, upload } from "./common.js";
import { startAlerts } from "./alerts.js";

const state = { me: null, cfg: null, units: [], list: [], selected: null, detail: null, gps: null, unitDocs: null };
const $ = (id) => document.getElementById(id);
const officer = () => can(state.me, "act");

async function guard(fn) {
  try { return await fn(); } catch (err) { toast(err.message || t("error.generic")); return null; }
}

// The penalty form: 单位/个人, 罚款/警告, the person's name and ID number, a clause from the clause database that
// covers this violation and allows this penalty, and an amount within that clause's range (the server checks all).
// What the officer typed into a proposed penalty's form and has not sent yet, by penalty id: a push that repaints
// the case (another officer's change, a late event) keeps it instead of resetting the form under the officer's hands.
const penaltyDrafts = new Map();

function penaltyForm(d, p) {
  const draft = penaltyDrafts.get(p.id) || { target: p.target, kind: p.kind, clause: null,
    amount: String(p.amount_yuan), person: p.person_name || "", personId: p.person_id || "" };
  const target = h("select#pen-target", {}, ...["unit", "individual"].map((v) =>
    h("option", { value: v, selected: v === draft.target }, t("pen.target." + v))));
  const kind = h("select#pen-kind", {}, ...["fine", "warning"].map((v) =>
    h("option", { value: v, selected: v === draft.kind }, t("pen.kind." + v))));
  const clause = h("select#pen-clause");
  const amount = h("input#pen-amount", { type: "number", value: draft.amount });
  const person = h("input#pen-person", { maxlength: "100", value: draft.person, placeholder: t("pen.person") });
  const personId = h("input#pen-person-id", { maxlength: "18", value: draft.personId, pattern: "[0-9]{17}[0-9Xx]",
    placeholder: t("pen.person_id") });
  const range = h("span#pen-range.legend");
  const beyond = h("span#pen-beyond.legend", { hidden: true }, t("pen.beyond"));
  const who = h("div.row", h("label", t("pen.person")), person, h("label", t("pen.person_id")), personId);
  const money = h("div.row", h("label", t("hz.penalty.amount")), amount, range);
  const allowed = (c) => c.covers.includes(d.category) && c.penalties.some((x) => x.target === target.value && x.kind === kind.value);
  const refresh = () => {
    const fits = state.cfg.law_clauses.filter(allowed);
    const cited = draft.clause ? [draft.clause] : p.clauses.map((c) => c.key);
    clause.replaceChildren(...fits.map((c) => h("option", { value: c.key, selected: cited.includes(c.key) }, c.citation)));
    const c = fits.find((x) => x.key === clause.value);
    const r = c && c.penalties.find((x) => x.target === target.value && x.kind === kind.value);
    amount.min = r ? String(r.min_yuan) : "0";
    amount.max = r ? String(r.max_yuan) : "";
    range.textContent = r && kind.value === "fine" ? `${r.min_yuan}–${r.max_yuan}` : (fits.length ? "" : t("pen.no_clause"));
    who.hidden = target.value !== "individual";
    money.hidden = kind.value !== "fine";
    // the station's own authority (config): beyond it the case is referred (移送), not decided here
    const limit = state.cfg.station_authority.find((a) => a.target === target.value && a.kind === kind.value);
    beyond.hidden = !!limit && !(kind.value === "fine" && Number(amount.value) > limit.max_yuan);
  };
  const edited = () => {
    Object.assign(draft, { target: target.value, kind: kind.value, clause: clause.value || null, amount: amount.value,
      person: person.value, personId: personId.value });
    penaltyDrafts.set(p.id, draft);
  };
  target.onchange = () => { refresh(); edited(); };
  kind.onchange = () => { refresh(); edited(); };
  clause.onchange = () => { edited(); refresh(); };
  amount.oninput = () => { refresh(); edited(); };
  person.oninput = edited;
  personId.oninput = edited;
  refresh();
  const send = (action) => guard(async () => {
    const body = { target: target.value, kind: kind.value, clauses: clause.value ? [clause.value] : null };
    if (kind.value === "fine") body.amount_yuan = Number(amount.value);
    if (target.value === "individual") { body.person_name = person.value.trim(); body.person_id = personId.value.trim() || null; }
    await post(`/api/penalties/${p.id}/${action}`, body); penaltyDrafts.delete(p.id); await select(d.id);
  });
  return h("div.pen-form",
    h("div.row", h("label", t("pen.target")), target, h("label", t("pen.kind")), kind),
    who, h("div.row", h("label", t("pen.clause")), clause), money,
    h("div.row", h("button#pen-confirm.btn.btn-danger", { type: "button", onclick: () => send("confirm") },
      t("hz.penalty.confirm")),
    h("button#pen-refer.btn", { type: "button", onclick: () => send("refer") }, t("hz.penalty.refer")), beyond));
}

async function refreshList() {
  state.list = await get(`/api/hazards?status=${$("filter").value}`);
  paintList();
}

function paintList() {
  const ul = $("hz-list");
  ul.replaceChildren(...state.list.map((x) => h("li.hz-item", {
    dataset: { status: x.status, id: String(x.id) }, tabindex: "0",
    class: x.id === state.selected ? "selected" : "",
    onclick: () => select(x.id),
  },
  h("div.u", x.unit.name),
  h("div", x.category_name),
  h("div.m", h("span.badge.st", t("hst." + x.status)),
    x.severity === "major" ? h("span.badge.major", t("sev.major")) : null,
    h("span", t("src." + x.source)),
    x.deadline ? h("span", `${t("hz.deadline")} ${fmtTime(x.deadline)}`) : null))));
  if (!state.list.length) ul.replaceChildren(h("li.empty", t("hz.none")));
}

async function select(id) {
  state.selected = id;
  state.detail = await get(`/api/hazards/${id}`);
  paintList();
  paintDetail();
}

// The violated clauses a notice cites: those the finding named (an inspection item's) and the category's, checked;
// the others that cover the violation, offered (penalty clauses are cited by a penalty, not a notice).
function clauseChecks(d, cat) {
  const own = (d.clauses || []).map((c) => c.key);
  const checked = (c) => own.includes(c.key) || (!!cat && cat.clauses.includes(c.key));
  const offered = state.cfg.law_clauses.filter((c) => checked(c) || (c.covers.includes(d.category) && !c.penalties.length));
  return h("div.clauses", offered.map((c) => h("label", h("input", {
    type: "checkbox", value: c.key, checked: checked(c), name: "clause" }), " ", c.citation)));
}

function actions(d) {
  const out = [];
  const cat = state.cfg.categories.find((c) => c.key === d.category);
  if (officer() && d.status === "open") {
    const days = h("input#n-days", { type: "number", min: "1", max: "365", value: String(cat ? cat.default_days : 3) });
    const req = h("textarea#n-req", { maxlength: "2000" }, cat ? cat.requirement : "");
    const checks = clauseChecks(d, cat);
    out.push(h("div.card", h("h2", t("hz.notice")),
      h("div.form-grid", h("label", t("hz.notice.days")), days, h("label", t("hz.notice.requirement")), req,
        h("label", t("hz.notice.clauses")), checks),
      h("div.row", h("button#n-issue.btn.btn-primary", { type: "button", onclick: () => guard(async () => {
        const clauses = [...checks.querySelectorAll("input:checked")].map((i) => i.value);
        await post(`/api/hazards/${d.id}/notice`, { days: Number(days.value), requirement: req.value, clauses });
        await select(d.id); await refreshList();
      }) }, t("hz.notice.issue")),
      h("button#n-immediate.btn", { type: "button", onclick: () => guard(async () => {
        const clauses = [...checks.querySelectorAll("input:checked")].map((i) => i.value);
        await post(`/api/hazards/${d.id}/notice`, { immediate: true, requirement: req.value, clauses });
        await select(d.id); await refreshList();
      }) }, t("hz.notice.immediate")),
      h("button.btn", { type: "button", onclick: () => guard(async () => {
        await post(`/api/hazards/${d.id}/withdraw`, { note: "" }); await select(d.id); await refreshList();
      }) }, t("hz.withdraw")))));
  }
  if (["notice_issued", "proof_submitted", "recheck_due", "penalty"].includes(d.status)) {
    if (state.me.user.role === "unit" || officer()) {
      const note = h("textarea#p-note", { maxlength: "2000" });
      const files = h("input#p-files", { type: "file", accept: "image/jpeg,image/png,image/webp", multiple: true,
        capture: "environment" });
      if (state.me.user.role === "unit") {
        out.push(h("div.card", h("h2", t("hz.proof")), h("div.form-grid", h("label", t("hz.proof.note")), note,
          h("label", t("hz.photos")), files),
        h("div.row", h("button#p-submit.btn.btn-primary", { type: "button", onclick: () => guard(async () => {
          const fd = new FormData();
          fd.append("note", note.value);
          for (const f of files.files) fd.append("files", f, f.name);
          await upload(`/api/hazards/${d.id}/proof`, fd);
          toast(t("hz.proof.submit"), "info");
          await select(d.id);
        }) }, t("hz.proof.submit")))));
      }
    }
    if (officer() && d.status !== "penalty") {
      const note = h("input#r-note", { maxlength: "2000", placeholder: t("hz.recheck.note") });
      const recheck = (ok) => guard(async () => {
        await post(`/api/hazards/${d.id}/recheck`, { rectified: ok, note: note.value });
        await select(d.id); await refreshList();
      });
      const overdue = d.deadline && Date.parse(d.deadline) <= now();
      out.push(h("div.card", h("h2", t("hz.recheck")), h("div.row", note,
        h("button#r-ok.btn.btn-ok", { type: "button", onclick: () => recheck(true) }, t("hz.recheck.ok")),
        h("button#r-fail.btn.btn-danger", { type: "button", onclick: () => recheck(false) }, t("hz.recheck.fail")),
        overdue ? h("button#pen-propose.btn", { type: "button", onclick: () => guard(async () => {
          await post(`/api/hazards/${d.id}/penalty`); await select(d.id);
        }) }, t("hz.penalty.propose")) : null)));
    }
  }
  for (const p of d.penalties) {
    const rows = [h("div.row", h("span.badge.st", t("pst." + p.status)),
      h("span", p.kind === "fine" ? `¥${p.amount_yuan.toLocaleString()}` : t("hz.penalty")),
      p.number ? h("span", p.number) : null,
      p.pdf ? h("a.btn.btn-small", { href: p.pdf, target: "_blank" }, t("hz.penalty.pdf")) : null),
    h("p", p.facts),
    h("p.legend", p.clauses.map((c) => c.citation).join("、"))];
    if (officer() && p.status === "proposed") rows.push(penaltyForm(d, p));
    if (p.inform) rows.push(informRow(d, p));
    for (const r of d.referrals.filter((x) => x.penalty_id === p.id)) rows.push(referralRow(d, r));
    if (can(state.me, "approve") && p.status === "confirmed") {
      rows.push(h("div.row", h("button#pen-approve.btn.btn-primary", { type: "button", onclick: () => guard(async () => {
        await post(`/api/penalties/${p.id}/approve`); await select(d.id);
      }) }, t("hz.penalty.approve"))));
    }
    if (officer() && p.status === "approved") {
      const note = h("input#pen-note", { maxlength: "2000" });
      rows.push(h("div.row", note, h("button#pen-close.btn.btn-ok", { type: "button", onclick: () => guard(async () => {
        await post(`/api/penalties/${p.id}/close`, { note: note.value }); await select(d.id); await refreshList();
      }) }, t("hz.penalty.close"))));
    }
    out.push(h("div.card.penalty", { dataset: { status: p.status } }, h("h2", t("hz.penalty")), rows));
  }
  return out;
}

/** 案件移送书: its PDF (a draft until approved), the receiving authority, and (admin) the approval that seals it. */
function referralRow(d, r) {
  const row = h("div.row.referral", { dataset: { status: r.status } },
    h("a#ref-pdf.btn.btn-small", { href: r.pdf, target: "_blank" }, t("hz.referral.pdf")),
    h("span", r.number), h("span.badge", t("rst." + r.status)), h("span.legend", `→ ${r.receiving_authority}`));
  if (can(state.me, "approve") && r.status === "proposed") {
    row.append(h("button#ref-approve.btn.btn-primary", { type: "button", onclick: () => guard(async () => {
      await post(`/api/referrals/${r.id}/approve`); await select(d.id); await refreshList();
    }) }, t("hz.referral.approve")));
  }
  return row;
}

/** 复查意见书: one per officer's recheck, result and note, with its PDF (the unit sees them too). */
function opinionsCard(d) {
  if (!d.opinions.length) return null;
  return h("div.card.opinions", h("h2", t("hz.opinions")), d.opinions.map((o) => h("div.row.opinion",
    { dataset: { rectified: String(o.rectified) } },
    h("a.btn.btn-small.opinion-pdf", { href: o.pdf, target: "_blank" }, t("hz.opinion.pdf")),
    h("span", o.number), h("span.badge", t(o.rectified ? "hz.recheck.ok" : "hz.recheck.fail")),
    h("span.legend", `${fmtTime(o.issued_at)}${o.note ? ` · ${o.note}` : ""}`))));
}

/** 行政处罚告知书: its PDF, the party's deadline to state and defend, and (officer) recording the statement. */
function informRow(d, p) {
  const i = p.inform;
  const row = h("div.row.inform", { dataset: { statement: i.statement || "none" } },
    h("a#inform-pdf.btn.btn-small", { href: i.pdf, target: "_blank" }, t("hz.inform.pdf")),
    h("span", i.number),
    h("span.legend", `${t(i.hearing ? "hz.inform.reply_hearing" : "hz.inform.reply")} ${fmtTime(i.reply_by)}`),
    i.statement ? h("span.badge", t("hz.inform." + i.statement)) : null);
  if (officer() && p.status === "confirmed" && !i.statement) {
    const note = h("input#inform-note", { maxlength: "2000", placeholder: t("hz.inform.note") });
    const send = (statement) => guard(async () => {
      await post(`/api/penalties/${p.id}/statement`, { statement, note: note.value }); await select(d.id);
    });
    row.append(note,
      h("button#inform-stated.btn", { type: "button", onclick: () => send("stated") }, t("hz.inform.record_stated")),
      h("button#inform-waived.btn", { type: "button", onclick: () => send("waived") }, t("hz.inform.record_waived")));
  }
  return row;
}

function paintDetail() {
  const d = state.detail;
  if (!d) return;
  const notice = d.notices[d.notices.length - 1];
  $("detail").replaceChildren(
    h("h1#d-unit", d.unit.name),
    h("div.row", h("span#d-status.badge.st", { dataset: { status: d.status } }, t("hst." + d.status)),
      d.outcome ? h("span.badge", t("out." + d.outcome)) : null,
      h("span.badge" + (d.severity === "major" ? ".major" : ""), t("sev." + d.severity)),
      h("span.badge", t("src." + d.source))),
    h("dl.kv",
      h("dt", t("hz.category")), h("dd", d.category_name),
      h("dt", t("hz.description")), h("dd", d.description || "—"),
      h("dt", t("detail.address")), h("dd", d.unit.address || "—"),
      h("dt", t("hz.found")), h("dd", `${fmtTime(d.found_at)} · ${d.found_by}`),
      d.clauses && d.clauses.length ? [h("dt", t("hz.clauses")), h("dd#d-clauses", d.clauses.map((c) => c.citation).join("、"))] : null,
      d.inspection_id ? [h("dt", t("hz.inspection")), h("dd", h("a#d-inspection", {
        href: `/api/inspections/${d.inspection_id}/pdf`, target: "_blank" }, t("doc.inspection")))] : null,
      d.camera_id ? [h("dt", t("hz.camera")), h("dd", `${d.camera_id} ${d.zone || ""}`)] : null,
      d.lat !== null ? [h("dt", t("hz.location")), h("dd", `${d.lat}, ${d.lon}`)] : null,
      d.deadline ? [h("dt", t("hz.deadline")), h("dd#d-deadline", fmtTime(d.deadline))] : null),
    notice ? h("div.card", { dataset: { kind: notice.kind } },
      h("h2", t(notice.kind === "immediate" ? "nk.immediate" : "hz.notice")),
      h("div.row", h("span#d-notice-number", notice.number),
      h("a#d-notice-pdf.btn.btn-small", { href: notice.pdf, target: "_blank" }, t("hz.notice.pdf"))),
    h("p.legend", notice.clauses.map((c) => c.citation).join("、"))) : null,
    opinionsCard(d),
    ...actions(d),
    h("div.card", h("h2", t("hz.evidence")), h("div.gallery", d.evidence.map((e) => h("figure",
      h("a", { href: e.url, target: "_blank" }, h("img", { src: e.url, alt: e.filename, loading: "lazy" })),
      h("figcaption", `${t("ev." + e.stage)} · ${fmtTime(e.uploaded_at)} · ${e.sha256.slice(0, 8)}`))))),
    h("div.card", h("h2", t("hz.timeline")), h("ol#d-timeline.tl", d.timeline.map((e) => h("li",
      { dataset: { action: e.action } }, h("span.at", fmtTime(e.at)), t("tl." + e.action), " · ", e.actor,
      e.data && e.data.number ? ` · ${e.data.number}` : "",
      // a recheck shows its result and note to everyone who sees the case, the unit included
      e.action === "hazard.rechecked" && e.data ? h("span.rc", { dataset: { rectified: String(!!e.data.rectified) } },
        ` · ${t(e.data.rectified ? "rc.ok" : "rc.fail")}${e.data.note ? ` · ${e.data.note}` : ""}`) : null)))),
  );
}

/** The new-hazard form's controls; `act` runs an action once the page has its data (see main). */
function bindForm(act) {
  const form = $("new-form");
  $("new-btn").onclick = () => act(() => { if (officer()) form.hidden = !form.hidden; });
  $("f-cancel").onclick = () => { form.hidden = true; };
  $("f-gps").onclick = () => {
    if (!navigator.geolocation) return;
    navigator.geolocation.getCurrentPosition((pos) => {
      state.gps = { lat: pos.coords.latitude, lon: pos.coords.longitude };
      $("f-gps-out").textContent = `${t("hz.gps.ok")} ${state.gps.lat.toFixed(5)}, ${state.gps.lon.toFixed(5)}`;
    }, (err) => toast(err.message));
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(async () => {
      const body = { unit_id: $("f-unit").value, category: $("f-category").value, source: $("f-source").value,
        description: $("f-desc").value, ...(state.gps || {}) };
      if ($("f-severity").value) body.severity = $("f-severity").value;
      const created = await post("/api/hazards", body);
      const files = $("f-photos").files;
      if (files.length) {
        const fd = new FormData();
        fd.append("stage", "before");
        for (const f of files) fd.append("files", f, f.name);
        await upload(`/api/hazards/${created.id}/evidence`, fd);
      }
      form.reset();
      form.hidden = true;
      toast(t("hz.created"), "info");
      await refreshList();
      await select(created.id);
    });
  });
}

function fillSelects() {
  $("f-unit").replaceChildren(...state.units.map((u) => h("option", { value: u.id }, u.name)));
  $("f-category").replaceChildren(...state.cfg.categories.map((c) => h("option", { value: c.key }, c.name)));
}

/** A unit's own documents (every kind): issued and served dates, and the recheck results and notes of the case. */
async function refreshUnitDocs() {
  if (state.me.user.role !== "unit") return;
  state.unitDocs = await get(`/api/units/${encodeURIComponent(state.me.user.unit_id)}/documents`);
  paintUnitDocs();
}

function paintUnitDocs() {
  if (!state.unitDocs) return;
  $("unit-docs").hidden = false;
  $("unit-docs-list").replaceChildren(state.unitDocs.length ? h("ul.hz-docs", state.unitDocs.map((d) => h("li",
    { dataset: { kind: d.kind, id: String(d.id) } },
    h("div", h("strong", t("doc." + d.kind)), " ", h("a.doc-pdf", { href: d.pdf, target: "_blank" }, d.number),
      " · ", d.category_name),
    h("div.legend", `${t("ud.issued")} ${fmtTime(d.issued_at)} · `,
      h("span.doc-served", d.served_at ? `${t("ud.served")} ${fmtTime(d.served_at)}` : t("ud.not_served"))),
    d.rechecks.map((r) => h("div.rc", { dataset: { rectified: String(r.rectified) } },
      `${t("hz.recheck")} ${fmtTime(r.at)} · ${t(r.rectified ? "rc.ok" : "rc.fail")}${r.note ? ` · ${r.note}` : ""}`)))))
    : h("p.legend", t("ud.none")));
}

async function main() {
  applyI18n(document);
  bindLangToggle($("lang"));
  $("logout").onclick = logout;
  const paintWho = () => { $("who").textContent = `${state.me.user.username} · ${t("role." + state.me.user.role)}`; };
  const ready = (async () => {
    state.me = await loadMe();
    startAlerts(state.me, { page: "hazards" });
    paintWho();
    const [cfg, units] = await Promise.all([get("/api/hazards/config"), get("/api/units")]);
    state.cfg = cfg;
    state.units = units;
    if (!officer()) {
      $("new-btn").hidden = true;
      $("nav-console").hidden = !can(state.me, "read");
      $("nav-assessor").hidden = !can(state.me, "read") && !state.me.supervision;
      $("nav-triage").hidden = !can(state.me, "read");
      const home = { unit: "/unit.html", agency: "/agency.html" }[state.me.user.role];
      if (home) { $("nav-console").href = home; $("nav-console").hidden = false; }
    }
    fillSelects();
    return true;
  })().catch((err) => { toast(err.message || t("error.generic")); return false; });
  // Every control is bound before anything is awaited, so the first click after the page loads is never lost:
  // each waits for the page's data, then acts.
  const act = (fn) => ready.then((ok) => (ok ? guard(fn) : null));
  bindForm(act);
  $("filter").onchange = () => act(refreshList);
  if (!(await ready)) return;
  onLangChange(() => { applyI18n(document); paintWho(); paintList(); paintDetail(); paintUnitDocs(); });
  await refreshList();
  await guard(refreshUnitDocs);
  const wanted = Number(new URLSearchParams(location.hash.slice(1)).get("id"));
  if (wanted) await guard(() => select(wanted));
  connectLive({
    onOpen: () => guard(refreshList),
    onState: (on) => { $("ws-state").dataset.online = on ? "1" : "0"; $("ws-state").textContent = t(on ? "ws.online" : "ws.offline"); },
    onEvent: (ev) => {
      if (ev.type !== "hazard.updated") return;
      guard(async () => {
        await refreshList();
        if (state.selected === ev.hazard.id) await select(ev.hazard.id);
        await refreshUnitDocs();
      });
    },
  });
}

main();
