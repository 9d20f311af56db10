// Every UI string of the Firelink pages, Simplified Chinese (default) and English.
// Code and API values stay English; only what a person reads lives here.
// Usage: t("key"), t("key", {n: 3}) for "{n}" placeholders; elements with
// data-i18n="key" (text), data-i18n-ph="key" (placeholder), data-i18n-title="key" (title);
// <title data-i18n-doc="key"> (the document title, see pageTitle()).

export const STRINGS = {
  zh: {
    "app.name": "Firelink 联动指挥",
    "app.console": "综合指挥调度室",
    "app.unit": "重点单位 · 一键报警",
    "app.agency": "联动调度",
    // page titles (<title data-i18n="title.…">)
    "title.agency": "Firelink · 联动调度",
    "title.assessor": "Firelink · 一键考评",
    "title.hazards": "Firelink · 隐患整改",
    "title.console": "Firelink · 综合指挥调度室",
    "title.login": "Firelink · 登录",
    "title.unit": "Firelink · 一键报警",
    "title.video": "Firelink · 视频巡查",
    "lang.toggle": "EN",
    "lang.toggle.title": "Switch to English",
    "logout": "退出",
    "loading": "加载中…",
    "error.generic": "操作失败",
    "error.network": "网络错误，正在重试",

    "login.title": "登录",
    "login.username": "用户名",
    "login.password": "密码",
    "login.submit": "登录",
    "login.busy": "正在登录…",
    "login.failed": "用户名或密码错误",
    "login.locked": "登录失败次数过多，请 {s} 秒后再试",
    "login.expired": "登录已过期，请重新登录",

    "role.admin": "管理员",
    "role.duty_officer": "值班民警",
    "role.unit": "重点单位",
    "role.agency": "联动单位",
    "role.assessor": "考评人员",
    "role.station_chief": "所长",
    "role.deputy_chief": "分管副所长",
    "role.community_officer": "社区民警",
    "role.brigade_reviewer": "大队审核员",
    "role.city_supervisor": "市局督导",
    "readonly": "只读",

    "ws.online": "实时连接",
    "ws.offline": "连接中断，正在重连…",

    "sound.enable": "点击任意处启用报警声音",
    "sound.on": "声音已开启",
    "sound.muted": "已静音",
    "sound.mute": "静音",
    "sound.unmute": "取消静音",


    "status.new": "未签收",
    "status.acknowledged": "已签收",
    "status.dispatched": "已联动",
    "status.on_scene": "已到场",
    "status.closed": "已办结",

    "outcome.resolved": "办结",
    "outcome.false_alarm": "误报",

    "dstatus.none": "未联动",
    "dstatus.pending": "待发送",
    "dstatus.sent": "已发送",
    "dstatus.delivered": "已送达",
    "dstatus.acknowledged": "已签收",
    "dstatus.on_scene": "已到场",
    "chan.webhook": "推送接口",
    "chan.mqtt": "MQTT",
    "chan.status.pending": "未送出",
    "chan.status.sent": "已发出，未确认",
    "chan.status.delivered": "对方已确认",
    "chan.attempts": "已尝试{n}次",

    "queue.title": "警情队列",
    "queue.empty": "暂无警情",
    "queue.alarms": "报警 {n} 次",
    "queue.escalated": "超时升级",

    "detail.none": "请选择左侧警情",
    "detail.idle": "当前无未处理警情",
    "detail.address": "地址",
    "detail.category": "单位类别",
    "detail.contact": "联系人",
    "detail.kind": "报警类型",
    "detail.opened": "首次报警",
    "detail.last": "最近报警",
    "detail.count": "报警次数",
    "detail.history": "历史警情",
    "detail.history.n": "{n} 起",
    "detail.ackby": "签收人",
    "detail.closed": "已办结：{outcome}（{who} {at}）",
    "detail.elapsed": "已用时",

    "act.ack": "签收",
    "act.dispatch_both": "联动 {numbers}",
    "act.dispatch_one": "仅 {number}",
    "act.on_scene": "到场",
    "act.resolve": "办结",
    "act.false_alarm": "误报",
    "act.keys": "快捷键：A 签收 · D 联动 · S 到场 · R 办结 · F 误报 · ↑↓ 切换",
    "act.done": "已完成",

    "close.title.resolved": "办结警情",
    "close.title.false_alarm": "按误报关闭",
    "close.note": "处置说明",
    "close.note.ph": "例如：已扑灭，无人员伤亡",
    "close.confirm": "确认",
    "close.cancel": "取消",

    "section.dispatch": "联动调度",
    "section.video": "视频",
    "section.timeline": "处置记录",
    "section.times": "响应时间",
    "section.messages": "指令与回复",
    "section.devices": "设备状态",
    "section.rejections": "被拒绝的输入",

    "times.alarm_to_ack_s": "报警→签收",
    "times.ack_to_dispatch_s": "签收→联动",
    "times.alarm_to_dispatch_s": "报警→联动",

    "video.none": "暂无视频",
    "video.offline": "视频中断",
    "nav.video": "视频巡查",
    "nav.hazards": "隐患整改",
    "nav.triage": "举报受理",
    "nav.units": "单位档案",
    "nav.assessor": "考评",
    "nav.unit_hazards": "整改通知",
    "nav.console": "返回调度台",
    "wall.title": "视频巡查",
    "wall.count": "共 {n} 路",
    "wall.page": "第 {p} / {n} 页",
    "wall.prev": "上一页",
    "wall.next": "下一页",
    "wall.none": "暂无可查看的摄像头",
    "wall.keys": "←/→ 翻页 · 点击画面放大 · Esc 返回",
    "wall.back": "返回",
    "wall.snapshot": "抓拍",
    "wall.snapshot.saved": "已抓拍",
    "wall.hazard": "记录隐患",
    "wall.hazard.saved": "已记录隐患 #{id}（含抓拍画面），请到隐患页下发整改通知",
    "cam.status.online": "在线",
    "cam.status.offline": "离线",
    "cam.status.frozen": "画面冻结",
    "cam.status.dark": "画面过暗/遮挡",
    "cam.status.reconnecting": "重连中",
    "cam.status.starting": "连接中",
    "cam.status.disabled": "已停用",
    "cam.status.standby": "由其他节点监看",
    "cam.status.error": "故障",
    "evidence.title": "证据",
    "evidence.refresh": "刷新证据",
    "evidence.none": "暂无证据",
    "evidence.kind.snapshot": "报警截图",
    "evidence.kind.clip": "录像片段",
    "evidence.kind.photo": "现场照片",
    "tl.evidence.saved": "证据已保存",
    "photo.send": "拍照上传",
    "photo.sending": "正在上传…",
    "photo.sent": "照片已上传",
    "photo.failed": "照片上传失败",

    "msg.placeholder": "向单位下达指令…",
    "msg.send": "发送",
    "msg.empty": "暂无指令",
    "msg.from.officer": "民警",
    "msg.from.unit": "单位",
    "msg.quick.1": "立即切断电源",
    "msg.quick.2": "组织人员疏散",
    "msg.quick.3": "检查是否有被困人员",
    "msg.quick.4": "使用灭火器初期扑救",
    "msg.quick.5": "打开安全出口，保持消防通道畅通",

    "tl.alarm.received": "收到报警",
    "tl.incident.created": "生成警情",
    "tl.incident.acknowledged": "签收",
    "tl.dispatch.created": "发起联动",
    "tl.dispatch.sent": "联动已发送",
    "tl.dispatch.delivered": "联动已送达",
    "tl.dispatch.attempt_failed": "联动发送失败，重试中",
    "tl.dispatch.acknowledged": "联动单位签收",
    "tl.dispatch.on_scene": "联动单位到场",
    "tl.incident.on_scene": "到场",
    "tl.incident.escalated": "超时升级",
    "tl.incident.closed": "关闭警情",
    "tl.incident.message": "消息",
    "tl.system": "系统",

    "dev.status.online": "在线",
    "dev.status.offline": "离线",
    "dev.status.fault": "故障",
    "dev.status.unknown": "未知",
    "dev.all_ok": "全部设备正常（{n}）",
    "dev.none": "暂无设备",

    "rej.total": "共 {n} 条",
    "rej.none": "暂无",
    "rej.reason": "原因",

    "unit.hold": "按住 1 秒报警",
    "unit.hold.short": "请按住不放 1 秒",
    "unit.button": "一键报警",
    "unit.again": "再次报警",
    "unit.sending": "正在发送…",
    "unit.sent": "报警已发送，民警正在处理",
    "unit.failed": "报警发送失败，请立即拨打 119 / 110",
    "unit.none": "一切正常。发生火情时按住下方按钮报警。",
    "unit.instructions": "民警指令",
    "unit.no_instructions": "等待民警指令…",
    "unit.reply.ph": "回复民警…",
    "unit.reply.send": "回复",
    "unit.quick.1": "已切断电源",
    "unit.quick.2": "人员已疏散",
    "unit.quick.3": "无人员被困",
    "unit.quick.4": "有人员被困，请求救援",
    "unit.step.new": "已报警",
    "unit.step.acknowledged": "民警已签收",
    "unit.step.dispatched": "已通知 119/120",
    "unit.step.on_scene": "救援已到场",
    "unit.step.closed": "已办结",
    "unit.closed": "警情已办结",

    "ag.queue": "联动任务", "ag.supervision": "监督检查", "ag.evaluation": "考评",
    "ag.empty": "暂无联动任务",
    "ag.accept": "签收",
    "ag.waiting": "待签收",
    "ag.on_scene": "到场",
    "ag.address": "地址",
    "ag.contact": "联系人",
    "ag.position": "位置",
    "ag.map": "在地图中打开",
    "ag.nopos": "无坐标",
    "ag.dispatched_at": "下达时间",
    "ag.incident_status": "警情状态",
  },
  en: {
    "app.name": "Firelink",
    // page titles
    "title.agency": "Firelink · Linked dispatch",
    "title.assessor": "Firelink · One-key evaluation",
    "title.hazards": "Firelink · Hazards",
    "title.console": "Firelink · Command room",
    "title.login": "Firelink · Log in",
    "title.unit": "Firelink · One-key alarm",
    "title.video": "Firelink · Video patrol",
    "app.console": "Command room",
    "app.unit": "Key unit · one-key alarm",
    "app.agency": "Linked dispatch",
    "lang.toggle": "中",
    "lang.toggle.title": "切换到中文",
    "logout": "Log out",
    "loading": "Loading…",
    "error.generic": "Action failed",
    "error.network": "Network error, retrying",

    "login.title": "Log in",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.busy": "Logging in…",
    "login.failed": "Wrong username or password",
    "login.locked": "Too many failed logins; try again in {s} s",
    "login.expired": "Session expired, please log in again",

    "role.admin": "Admin",
    "role.duty_officer": "Duty officer",
    "role.unit": "Key unit",
    "role.agency": "Agency",
    "role.assessor": "Assessor",
    "role.station_chief": "Station chief",
    "role.deputy_chief": "Deputy chief",
    "role.community_officer": "Community officer",
    "role.brigade_reviewer": "Brigade reviewer",
    "role.city_supervisor": "City supervisor",
    "readonly": "read-only",

    "ws.online": "Live",
    "ws.offline": "Disconnected, reconnecting…",

    "sound.enable": "Click anywhere to enable alarm sound",
    "sound.on": "Sound on",
    "sound.muted": "Muted",
    "sound.mute": "Mute",
    "sound.unmute": "Unmute",


    "status.new": "Unacknowledged",
    "status.acknowledged": "Acknowledged",
    "status.dispatched": "Dispatched",
    "status.on_scene": "On scene",
    "status.closed": "Closed",

    "outcome.resolved": "Resolved",
    "outcome.false_alarm": "False alarm",

    "dstatus.none": "Not dispatched",
    "dstatus.pending": "Queued",
    "dstatus.sent": "Sent",
    "dstatus.delivered": "Delivered",
    "dstatus.acknowledged": "Accepted",
    "dstatus.on_scene": "On scene",
    "chan.webhook": "Webhook",
    "chan.mqtt": "MQTT",
    "chan.status.pending": "Not through",
    "chan.status.sent": "Sent, not confirmed",
    "chan.status.delivered": "Confirmed by agency",
    "chan.attempts": "{n} attempts",

    "queue.title": "Incidents",
    "queue.empty": "No incidents",
    "queue.alarms": "alarms: {n}",
    "queue.escalated": "Escalated",

    "detail.none": "Select an incident on the left",
    "detail.idle": "No open incidents",
    "detail.address": "Address",
    "detail.category": "Category",
    "detail.contact": "Contact",
    "detail.kind": "Alarm kind",
    "detail.opened": "First alarm",
    "detail.last": "Last alarm",
    "detail.count": "Alarms",
    "detail.history": "Past incidents",
    "detail.history.n": "{n}",
    "detail.ackby": "Acknowledged by",
    "detail.closed": "Closed: {outcome} ({who} {at})",
    "detail.elapsed": "Elapsed",

    "act.ack": "Acknowledge",
    "act.dispatch_both": "Dispatch {numbers}",
    "act.dispatch_one": "{number} only",
    "act.on_scene": "On scene",
    "act.resolve": "Resolved",
    "act.false_alarm": "False alarm",
    "act.keys": "Keys: A acknowledge · D dispatch · S on scene · R resolved · F false alarm · ↑↓ select",
    "act.done": "Done",

    "close.title.resolved": "Close as resolved",
    "close.title.false_alarm": "Close as false alarm",
    "close.note": "Note",
    "close.note.ph": "e.g. fire put out, nobody hurt",
    "close.confirm": "Confirm",
    "close.cancel": "Cancel",

    "section.dispatch": "Linked dispatch",
    "section.video": "Video",
    "section.timeline": "Timeline",
    "section.times": "Response times",
    "section.messages": "Instructions & replies",
    "section.devices": "Devices",
    "section.rejections": "Rejected input",

    "times.alarm_to_ack_s": "Alarm→ack",
    "times.ack_to_dispatch_s": "Ack→dispatch",
    "times.alarm_to_dispatch_s": "Alarm→dispatch",

    "video.none": "No video",
    "video.offline": "Video lost",
    "nav.video": "Video patrol",
    "nav.hazards": "Hazards",
    "nav.triage": "Reports",
    "nav.units": "Units",
    "nav.assessor": "Evaluation",
    "nav.unit_hazards": "Notices",
    "nav.console": "Back to console",
    "wall.title": "Video patrol",
    "wall.count": "{n} cameras",
    "wall.page": "Page {p} / {n}",
    "wall.prev": "Previous",
    "wall.next": "Next",
    "wall.none": "No cameras to show",
    "wall.keys": "←/→ page · click a picture to enlarge · Esc back",
    "wall.back": "Back",
    "wall.snapshot": "Snapshot",
    "wall.snapshot.saved": "Snapshot taken",
    "wall.hazard": "Record hazard",
    "wall.hazard.saved": "Hazard #{id} recorded with the snapshot; issue the notice on the hazards page",
    "cam.status.online": "Online",
    "cam.status.offline": "Offline",
    "cam.status.frozen": "Frozen",
    "cam.status.dark": "Too dark / covered",
    "cam.status.reconnecting": "Reconnecting",
    "cam.status.starting": "Connecting",
    "cam.status.disabled": "Disabled",
    "cam.status.standby": "Watched by another core",
    "cam.status.error": "Fault",
    "evidence.title": "Evidence",
    "evidence.refresh": "Refresh evidence",
    "evidence.none": "No evidence yet",
    "evidence.kind.snapshot": "Alarm snapshot",
    "evidence.kind.clip": "Video clip",
    "evidence.kind.photo": "Scene photo",
    "tl.evidence.saved": "Evidence saved",
    "photo.send": "Send photo",
    "photo.sending": "Uploading…",
    "photo.sent": "Photo sent",
    "photo.failed": "Photo upload failed",

    "msg.placeholder": "Instruction to the unit…",
    "msg.send": "Send",
    "msg.empty": "No instructions yet",
    "msg.from.officer": "Officer",
    "msg.from.unit": "Unit",
    "msg.quick.1": "Cut the power now",
    "msg.quick.2": "Evacuate everyone",
    "msg.quick.3": "Check for trapped people",
    "msg.quick.4": "Use extinguishers on the early fire",
    "msg.quick.5": "Open exits, keep fire lanes clear",

    "tl.alarm.received": "Alarm received",
    "tl.incident.created": "Incident opened",
    "tl.incident.acknowledged": "Acknowledged",
    "tl.dispatch.created": "Dispatch created",
    "tl.dispatch.sent": "Dispatch sent",
    "tl.dispatch.delivered": "Dispatch delivered",
    "tl.dispatch.attempt_failed": "Dispatch attempt failed, retrying",
    "tl.dispatch.acknowledged": "Agency accepted",
    "tl.dispatch.on_scene": "Agency on scene",
    "tl.incident.on_scene": "On scene",
    "tl.incident.escalated": "Escalated",
    "tl.incident.closed": "Closed",
    "tl.incident.message": "Message",
    "tl.system": "system",

    "dev.status.online": "online",
    "dev.status.offline": "offline",
    "dev.status.fault": "fault",
    "dev.status.unknown": "unknown",
    "dev.all_ok": "All devices OK ({n})",
    "dev.none": "No devices",

    "rej.total": "{n} in total",
    "rej.none": "None",
    "rej.reason": "Reason",

    "unit.hold": "Hold 1 s to raise the alarm",
    "unit.hold.short": "Keep holding for 1 second",
    "unit.button": "ALARM",
    "unit.again": "Alarm again",
    "unit.sending": "Sending…",
    "unit.sent": "Alarm sent — officers are handling it",
    "unit.failed": "Alarm NOT sent — call 119 / 110 now",
    "unit.none": "All clear. In case of fire, hold the button below.",
    "unit.instructions": "Officer's instructions",
    "unit.no_instructions": "Waiting for instructions…",
    "unit.reply.ph": "Reply to the officer…",
    "unit.reply.send": "Reply",
    "unit.quick.1": "Power is cut",
    "unit.quick.2": "Everyone evacuated",
    "unit.quick.3": "Nobody trapped",
    "unit.quick.4": "People trapped, need rescue",
    "unit.step.new": "Alarm raised",
    "unit.step.acknowledged": "Officer acknowledged",
    "unit.step.dispatched": "119/120 notified",
    "unit.step.on_scene": "Rescue on scene",
    "unit.step.closed": "Closed",
    "unit.closed": "Incident closed",

    "ag.queue": "Dispatches", "ag.supervision": "Supervision", "ag.evaluation": "Evaluation",
    "ag.empty": "No dispatches",
    "ag.accept": "Accept",
    "ag.waiting": "Awaiting acceptance",
    "ag.on_scene": "On scene",
    "ag.address": "Address",
    "ag.contact": "Contact",
    "ag.position": "Position",
    "ag.map": "Open in map",
    "ag.nopos": "no coordinates",
    "ag.dispatched_at": "Dispatched",
    "ag.incident_status": "Incident",
  },
};

const KEY = "firelink.lang";
let lang = (() => {
  try { return localStorage.getItem(KEY) === "en" ? "en" : "zh"; } catch { return "zh"; }
})();
const listeners = new Set();

export function getLang() { return lang; }

export function setLang(next) {
  lang = next === "en" ? "en" : "zh";
  try { localStorage.setItem(KEY, lang); } catch { /* private mode */ }
  document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
  applyI18n(document);
  for (const fn of listeners) fn(lang);
}

export function onLangChange(fn) { listeners.add(fn); }

/**
 * Labels that live in the server's registries, not here (GET /api/me): alarm kinds (config/alarm_kinds.py) as
 * "kind.<id>" and the configured agencies as "agency.<key>".
 */
export function learnLabels(me) {
  for (const k of me.alarm_kinds || []) {
    STRINGS.zh["kind." + k.id] = k.zh;
    STRINGS.en["kind." + k.id] = k.en;
  }
  for (const [key, a] of Object.entries(me.agencies || {})) {
    if (!a.label) continue;
    STRINGS.zh["agency." + key] = a.label.zh;
    STRINGS.en["agency." + key] = a.label.en;
  }
}

export function t(key, vars) {
  let s = STRINGS[lang][key] ?? STRINGS.zh[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

/** The page's title in the current language (<title data-i18n-doc="title.…">); for title flashing, too. */
export function pageTitle() {
  const el = document.querySelector("title[data-i18n-doc]");
  return el ? t(el.dataset.i18nDoc) : document.title;
}

// document.title is set when the language changes (and once at load), not on every applyI18n: a page
// that flashes its title for an alarm keeps control of it between language changes.
let titleLang = null;

export function applyI18n(root) {
  if (titleLang !== lang && document.querySelector("title[data-i18n-doc]")) {
    titleLang = lang;
    document.title = pageTitle();
  }
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-ph]")) el.placeholder = t(el.dataset.i18nPh);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}

/** Wires a 中/EN button. */
export function bindLangToggle(button) {
  const paint = () => {
    button.textContent = t("lang.toggle");
    button.title = t("lang.toggle.title");
  };
  paint();
  onLangChange(paint);
  button.addEventListener("click", () => setLang(lang === "zh" ? "en" : "zh"));
}

document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
