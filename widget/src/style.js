/*
 * The widget's stylesheet (inside its shadow root: the host page's CSS neither reaches in nor is
 * touched). Themable from the host page through custom properties, which cross the shadow
 * boundary: --docent-accent, --docent-accent-text, --docent-bg, --docent-text, --docent-muted,
 * --docent-border, --docent-surface, --docent-link, --docent-font, --docent-radius, and the
 * same names with `-dark-` (--docent-dark-accent, ...) for the dark theme. Every default pair
 * meets WCAG AA contrast (4.5:1 for text) in both themes.
 */
const LIGHT = [
  "--_accent:var(--docent-accent,#3b4cca)",
  "--_on-accent:var(--docent-accent-text,#fff)",
  "--_bg:var(--docent-bg,#fff)",
  "--_text:var(--docent-text,#1b1b1f)",
  "--_muted:var(--docent-muted,#55555f)",
  "--_border:var(--docent-border,#c9c9d3)",
  "--_field:var(--docent-border,#767680)",
  "--_surface:var(--docent-surface,#f1f2f6)",
  "--_link:var(--docent-link,var(--docent-accent,#3b4cca))",
  "--_focus:var(--docent-text,#1b1b1f)",
].join(";");

const DARK = [
  "--_accent:var(--docent-dark-accent,#aab4ff)",
  "--_on-accent:var(--docent-dark-accent-text,#14152b)",
  "--_bg:var(--docent-dark-bg,#1c1d22)",
  "--_text:var(--docent-dark-text,#ececf1)",
  "--_muted:var(--docent-dark-muted,#b4b4c0)",
  "--_border:var(--docent-dark-border,#4a4c57)",
  "--_field:var(--docent-dark-border,#8a8c99)",
  "--_surface:var(--docent-dark-surface,#292b33)",
  "--_link:var(--docent-dark-link,var(--docent-dark-accent,#aab4ff))",
  "--_focus:var(--docent-dark-text,#ececf1)",
].join(";");

const MONO = "ui-monospace,SFMono-Regular,Menlo,Consolas,monospace";

export const STYLE = `
:host{all:initial;display:block;${LIGHT};
--_font:var(--docent-font,system-ui,-apple-system,'Segoe UI',Roboto,sans-serif);
--_radius:var(--docent-radius,12px)}
:host([data-theme=dark]){${DARK}}
@media (prefers-color-scheme:dark){:host(:not([data-theme=light])){${DARK}}}
*{box-sizing:border-box}
[hidden]{display:none!important}
:focus-visible{outline:3px solid var(--_focus);outline-offset:2px}
header :focus-visible,.launcher:focus-visible{outline-color:var(--_on-accent);outline-offset:-5px}
button{font-family:var(--_font);cursor:pointer}
.launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;border:0;border-radius:999px;
padding:12px 20px;background:var(--_accent);color:var(--_on-accent);font:600 15px/1.2 var(--_font);
box-shadow:0 2px 10px #0004}
.panel{display:flex;flex-direction:column;background:var(--_bg);color:var(--_text);
font:15px/1.5 var(--_font);text-align:left}
.floating{position:fixed;right:20px;bottom:76px;width:min(420px,calc(100vw - 24px));
height:min(620px,calc(100vh - 100px));z-index:2147483000;border-radius:var(--_radius);
box-shadow:0 6px 30px #0005;overflow:hidden;border:1px solid var(--_border)}
:host([data-position=bottom-left]) .launcher,:host([data-position=bottom-left]) .floating{left:20px;right:auto}
@media (max-width:480px){.floating,:host([data-position=bottom-left]) .floating{left:12px;right:12px;
width:auto;bottom:72px;height:calc(100vh - 90px)}.launcher{right:12px;bottom:12px}
:host([data-position=bottom-left]) .launcher{left:12px}}
.inline{width:100%;height:min(75vh,720px);border:1px solid var(--_border);border-radius:var(--_radius);overflow:hidden}
header{display:flex;align-items:center;gap:8px;padding:10px 14px;background:var(--_accent);color:var(--_on-accent)}
header h2{flex:1;font-size:16px;margin:0}
header button{background:transparent;border:1px solid currentColor;border-radius:6px;color:inherit;font-size:13px;padding:4px 10px}
header .close{border:0;font-size:22px;line-height:1;padding:2px 8px}
.log{flex:1;overflow-y:auto;padding:12px 14px}
.greeting{color:var(--_muted);margin:0 0 12px}
.turn{margin:0 0 20px}
.q{font-weight:600;margin:0 0 8px;padding:8px 10px;background:var(--_surface);border-radius:8px;white-space:pre-wrap;overflow-wrap:anywhere}
.a{overflow-wrap:anywhere}
.a[data-state=waiting]::before{content:"Thinking…";color:var(--_muted)}
.a>:first-child{margin-top:0}
.a h1,.a h2,.a h3,.a h4,.a h5,.a h6{font-size:1.05em;line-height:1.3;margin:14px 0 6px}
.a h1{font-size:1.25em}.a h2{font-size:1.15em}
.a p,.a ul,.a ol,.a blockquote,.a hr{margin:0 0 8px}
.a ul,.a ol{padding-left:22px}
.a code{font-family:${MONO};font-size:.9em;background:var(--_surface);padding:1px 4px;border-radius:4px}
.code{position:relative;margin:0 0 8px}
.a pre{margin:0;padding:10px 64px 10px 12px;background:var(--_surface);border-radius:8px;white-space:pre-wrap;overflow-wrap:anywhere}
.a pre code{background:none;padding:0}
.copy{position:absolute;top:6px;right:6px;font-size:12px;padding:3px 8px;border:1px solid var(--_field);border-radius:6px;background:var(--_bg);color:var(--_text)}
.table{overflow-x:auto;margin:0 0 8px}
.a table{border-collapse:collapse;font-size:14px}
.a th,.a td{border:1px solid var(--_border);padding:4px 8px;text-align:left}
.a th{background:var(--_surface)}
.a blockquote{border-left:3px solid var(--_border);padding-left:10px;color:var(--_muted)}
.a a,.sources a{color:var(--_link)}
.cite{font-size:.8em;font-weight:600;text-decoration:none;padding:0 2px;vertical-align:.25em;line-height:1}
.cite:hover{text-decoration:underline}
.sources{margin:8px 0 0;padding:0;list-style:none;font-size:13px}
.sources li{margin:2px 0}
.sources .id{font-weight:600;margin-right:6px;color:var(--_muted)}
.feedback{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin:8px 0 0;font-size:13px;color:var(--_muted)}
.rate{display:inline-flex;align-items:center;justify-content:center;width:32px;height:32px;padding:0;
border:1px solid var(--_field);border-radius:8px;background:var(--_bg);color:var(--_text)}
.rate[aria-pressed=true]{background:var(--_accent);border-color:var(--_accent);color:var(--_on-accent)}
.rate svg{width:16px;height:16px;fill:currentColor}
.comment{display:flex;gap:6px;width:100%;margin-top:4px}
.comment textarea{height:38px;font-size:14px;padding:8px}
.comment button{border:1px solid var(--_field);border-radius:8px;background:var(--_bg);color:var(--_text);font-size:13px;padding:0 12px}
.fb-note{width:100%;margin:0;color:var(--_muted)}
.notice{margin:6px 0 0;padding:8px 10px;border-radius:8px;font-size:14px}
.notice.limit{background:#fff4d6;color:#5c4300}
.notice.fail{background:#fde2e2;color:#7a1010}
.notice.stopped{background:var(--_surface);color:var(--_muted)}
form.ask{display:flex;gap:8px;padding:10px;border-top:1px solid var(--_border)}
textarea{flex:1;resize:none;height:44px;padding:10px;border:1px solid var(--_field);border-radius:8px;
background:var(--_bg);color:var(--_text);font:15px/1.4 var(--_font)}
textarea::placeholder{color:var(--_muted);opacity:1}
form.ask button{padding:0 16px;border:0;border-radius:8px;background:var(--_accent);color:var(--_on-accent);font-weight:600;font-size:15px}
form.ask button.stop{background:var(--_text);color:var(--_bg)}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
`;
