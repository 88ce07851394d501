// The matting page: upload a photo once, then click, right-click or drag
// on it; every change asks the server for a new matte. No build step, no
// network beyond this server.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const el = {
    drop: $('drop'), panes: $('panes'), file: $('file'), file2: $('file2'),
    photo: $('photo'), overlay: $('overlay'), result: $('result'), resultWrap: $('result-wrap'),
    resultEmpty: $('result-empty'), resultCaption: $('result-caption'), busy: $('busy'), busyText: $('busy-text'),
    status: $('status'), encodeTime: $('encode-time'), matteTime: $('matte-time'), promptInfo: $('prompt-info'),
    mode: $('mode'), undo: $('undo'), clear: $('clear'), bgColor: $('bg-color'), bgFile: $('bg-file'),
    bgClear: $('bg-clear'), textRow: $('text-row'), text: $('text'), textGo: $('text-go'),
    dlAlpha: $('dl-alpha'), dlCutout: $('dl-cutout'), dlComposite: $('dl-composite'),
    tokenRow: $('token-row'), token: $('token'), tokenSave: $('token-save'), modelInfo: $('model-info'),
  };

  // state is also window.mam, for tests and the curious.
  const state = {
    info: null,
    file: null, // the uploaded File, to upload again if the server evicted it
    imageId: null, width: 0, height: 0,
    photoData: null, // ImageData of the photo
    points: [], box: null, text: '',
    history: [],
    resultId: null, alphaURL: null, alpha: null, mask: null, iou: null,
    tint: null, // canvas: the alpha tint and mask outline, drawn once per result
    bgImage: null, // ImageBitmap of an uploaded background
    matteCount: 0, encoding: false, matting: false, lastError: '',
    token: sessionStorage.getItem('mamToken') || '',
  };
  window.mam = state;

  let seq = 0; // the latest matte request; older answers are dropped
  let inflight = null; // AbortController of the running matte request

  // ---- API ----

  async function api(path, opts = {}) {
    const headers = Object.assign({}, opts.headers || {});
    if (state.token) headers['Authorization'] = 'Bearer ' + state.token;
    const resp = await fetch(path, Object.assign({}, opts, { headers }));
    if (resp.ok) return resp;
    let msg = resp.status + ' ' + resp.statusText;
    try {
      const body = await resp.json();
      if (body && body.error) msg = body.error;
    } catch (_) { /* not JSON */ }
    if (resp.status === 401) {
      el.tokenRow.hidden = false;
      msg = 'This server needs an API token: enter it below. (' + msg + ')';
    }
    if (resp.status === 503) {
      const ra = resp.headers.get('Retry-After');
      msg = 'Server busy: ' + msg + (ra ? ' Try again in ' + ra + ' s.' : '');
    }
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }

  function setStatus(msg, kind) {
    el.status.textContent = msg;
    el.status.className = 'status' + (kind ? ' ' + kind : '');
    if (kind === 'error') state.lastError = msg;
  }

  const secs = (ms) => ms < 1000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';

  async function loadInfo() {
    try {
      const resp = await api('api/info');
      const info = await resp.json();
      state.info = info;
      el.modelInfo.textContent = 'SAM ' + info.model + ' + M2M · ' + info.limits.slots + ' inference slot' + (info.limits.slots === 1 ? '' : 's');
      el.mode.textContent = '';
      for (const m of info.modes) {
        const o = document.createElement('option');
        o.value = o.textContent = m;
        el.mode.appendChild(o);
      }
      el.textRow.hidden = !info.text_prompts;
      if (info.auth && !state.token) el.tokenRow.hidden = false;
    } catch (e) {
      el.modelInfo.textContent = 'server unreachable';
      setStatus('Cannot reach the server: ' + e.message, 'error');
    }
  }

  // ---- opening a photo ----

  async function openFile(file) {
    if (!file) return;
    if (state.encoding) return;
    let bmp;
    try {
      bmp = await createImageBitmap(file);
    } catch (e) {
      setStatus('This browser cannot read ' + (file.name || 'the file') + ' as an image.', 'error');
      return;
    }
    state.file = file;
    const w = bmp.width, h = bmp.height;
    for (const c of [el.photo, el.overlay, el.result]) { c.width = w; c.height = h; }
    const ctx = el.photo.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(bmp, 0, 0);
    state.photoData = ctx.getImageData(0, 0, w, h);
    bmp.close();
    Object.assign(state, { width: w, height: h, points: [], box: null, text: '', history: [], imageId: null });
    clearResult();
    el.drop.hidden = true;
    el.panes.hidden = false;
    layout();
    drawOverlay();
    await upload();
  }

  async function upload() {
    state.encoding = true;
    updateButtons();
    el.busy.hidden = false;
    const t0 = performance.now();
    const tick = () => {
      const msg = 'Encoding the image with SAM… ' + secs(performance.now() - t0);
      el.busyText.textContent = msg;
      setStatus(msg);
    };
    tick();
    const timer = setInterval(tick, 100);
    el.encodeTime.textContent = 'encoding…';
    try {
      const fd = new FormData();
      fd.append('file', state.file, state.file.name || 'image');
      const resp = await api('api/images', { method: 'POST', body: fd });
      const ans = await resp.json();
      const total = performance.now() - t0;
      state.imageId = ans.id;
      el.encodeTime.textContent = secs(ans.encode_ms) + ' (' + secs(total) + ' with upload)';
      setStatus('Encoded ' + ans.width + '×' + ans.height + ' in ' + secs(ans.encode_ms) + '. Click the object: left click adds a foreground point, right click a background point, drag draws a box.', 'ok');
      document.body.dataset.imageId = ans.id;
    } catch (e) {
      el.encodeTime.textContent = 'failed';
      setStatus('Upload failed: ' + e.message, 'error');
    } finally {
      clearInterval(timer);
      el.busy.hidden = true;
      state.encoding = false;
      updateButtons();
    }
  }

  // layout scales the canvases (whatever the image's size) to fill their
  // panes within the window's height.
  function layout() {
    if (!state.width) return;
    const pane = el.photo.closest('.pane');
    const availW = pane.clientWidth;
    const top = el.panes.getBoundingClientRect().top + window.scrollY;
    const availH = Math.max(200, window.innerHeight - top - 60);
    const narrow = getComputedStyle(el.panes).gridTemplateColumns.split(' ').length < 2;
    const s = Math.min(availW / state.width, (narrow ? availH / 2 : availH) / state.height);
    const w = Math.max(1, Math.floor(state.width * s)) + 'px', h = Math.max(1, Math.floor(state.height * s)) + 'px';
    for (const c of [el.photo, el.result]) { c.style.width = w; c.style.height = h; }
  }
  window.addEventListener('resize', layout);

  // ---- prompts ----

  function toImage(ev) {
    const r = el.overlay.getBoundingClientRect();
    const x = (ev.clientX - r.left) * state.width / r.width;
    const y = (ev.clientY - r.top) * state.height / r.height;
    return { x: Math.max(0, Math.min(state.width, x)), y: Math.max(0, Math.min(state.height, y)) };
  }

  function snapshot() {
    state.history.push({ points: state.points.slice(), box: state.box && Object.assign({}, state.box), text: state.text });
    if (state.history.length > 100) state.history.shift();
  }

  let drag = null;
  el.overlay.addEventListener('contextmenu', (ev) => ev.preventDefault());
  el.overlay.addEventListener('pointerdown', (ev) => {
    if (!state.imageId || (ev.button !== 0 && ev.button !== 2)) return;
    ev.preventDefault();
    el.overlay.setPointerCapture(ev.pointerId);
    drag = { start: toImage(ev), sx: ev.clientX, sy: ev.clientY, button: ev.button, moved: false, end: null,
      background: ev.button === 2 || ev.shiftKey || ev.altKey || ev.ctrlKey || ev.metaKey };
  });
  el.overlay.addEventListener('pointermove', (ev) => {
    if (!drag) return;
    if (Math.hypot(ev.clientX - drag.sx, ev.clientY - drag.sy) > 5) drag.moved = true;
    if (drag.moved) {
      drag.end = toImage(ev);
      drawOverlay(boxOf(drag.start, drag.end));
    }
  });
  el.overlay.addEventListener('pointerup', (ev) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (d.moved && d.button === 0) {
      const b = boxOf(d.start, toImage(ev));
      if (b.x1 - b.x0 < 2 || b.y1 - b.y0 < 2) { drawOverlay(); return; }
      snapshot();
      state.box = b;
    } else {
      snapshot();
      state.points.push({ x: round1(d.start.x), y: round1(d.start.y), label: d.background ? 0 : 1 });
    }
    changed();
  });
  el.overlay.addEventListener('pointercancel', () => { drag = null; drawOverlay(); });

  const round1 = (v) => Math.round(v * 10) / 10;
  function boxOf(a, b) {
    return { x0: round1(Math.min(a.x, b.x)), y0: round1(Math.min(a.y, b.y)), x1: round1(Math.max(a.x, b.x)), y1: round1(Math.max(a.y, b.y)) };
  }

  function hasPrompt() { return state.points.length > 0 || state.box !== null || state.text !== ''; }

  function changed() {
    drawOverlay();
    updateButtons();
    if (hasPrompt()) matte(); else { abortMatte(); clearResult(); setStatus('Prompt cleared. Click the object.'); }
  }

  el.undo.addEventListener('click', () => {
    const prev = state.history.pop();
    if (!prev) return;
    state.points = prev.points; state.box = prev.box; state.text = prev.text;
    el.text.value = state.text;
    changed();
  });
  el.clear.addEventListener('click', () => {
    if (!hasPrompt()) return;
    snapshot();
    state.points = []; state.box = null; state.text = ''; el.text.value = '';
    changed();
  });
  el.mode.addEventListener('change', () => { if (hasPrompt()) matte(); });
  const textGo = () => { snapshot(); state.text = el.text.value.trim(); changed(); };
  el.textGo.addEventListener('click', textGo);
  el.text.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') textGo(); });

  // ---- matting ----

  function abortMatte() {
    if (inflight) { inflight.abort(); inflight = null; }
  }

  async function matte(retried) {
    if (!state.imageId) return;
    abortMatte();
    const my = ++seq;
    const ctl = new AbortController();
    inflight = ctl;
    state.matting = true;
    const t0 = performance.now();
    setStatus('Matting…');
    el.matteTime.textContent = 'matting…';
    const body = { mode: el.mode.value, output: ['alpha', 'mask'], format: 'json' };
    if (state.points.length) body.points = state.points;
    if (state.box) body.box = state.box;
    if (state.text) body.text = state.text;
    try {
      const resp = await api('api/images/' + state.imageId + '/matte', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal: ctl.signal,
      });
      const ans = await resp.json();
      const [alpha, mask] = await Promise.all([gray(ans.images.alpha), gray(ans.images.mask)]);
      if (my !== seq) return;
      const total = performance.now() - t0;
      Object.assign(state, { resultId: ans.result_id, alphaURL: ans.images.alpha, alpha, mask, iou: ans.iou });
      state.tint = makeTint(alpha, mask);
      state.matteCount++;
      document.body.dataset.resultId = ans.result_id;
      document.body.dataset.matteCount = String(state.matteCount);
      const t = ans.timings_ms;
      el.matteTime.textContent = secs(total) + ' (server ' + secs(t.matte + t.png) + ')';
      el.resultCaption.textContent = '· IoU ' + ans.iou.toFixed(3) + ' · ' + ans.mode;
      setStatus('Matte in ' + secs(total) + ': decoder + M2M + refinement ' + secs(t.matte) + ', PNG ' + secs(t.png) + (t.queue > 1 ? ', queued ' + secs(t.queue) : '') + '.', 'ok');
      drawOverlay();
      drawResult();
    } catch (e) {
      if (e.name === 'AbortError' || my !== seq) return;
      if (e.status === 404 && !retried && state.file) {
        setStatus('The server no longer holds this image: encoding it again…');
        await upload();
        if (state.imageId && my === seq) return matte(true);
        return;
      }
      el.matteTime.textContent = 'failed';
      setStatus('Matte failed: ' + e.message, 'error');
    } finally {
      if (my === seq) { state.matting = false; inflight = null; updateButtons(); }
    }
  }

  // dataBlob turns a base64 data URL into a Blob, without fetch (the
  // page's content security policy lets it connect to this server only).
  function dataBlob(url) {
    const comma = url.indexOf(',');
    const type = url.slice(5, url.indexOf(';'));
    const bin = atob(url.slice(comma + 1));
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Blob([bytes], { type });
  }

  // gray decodes a grayscale PNG data URL into one byte per pixel.
  async function gray(url) {
    const blob = dataBlob(url);
    const bmp = await createImageBitmap(blob, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
    const c = new OffscreenCanvas(bmp.width, bmp.height);
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(bmp, 0, 0);
    bmp.close();
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const out = new Uint8Array(c.width * c.height);
    for (let i = 0; i < out.length; i++) out[i] = d[4 * i];
    return out;
  }

  // makeTint draws the matte as a blue tint and SAM's mask as a yellow
  // outline, once per result.
  function makeTint(alpha, mask) {
    const w = state.width, h = state.height;
    const c = new OffscreenCanvas(w, h);
    const ctx = c.getContext('2d');
    const img = ctx.createImageData(w, h);
    const p = img.data;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        const m = mask[i] > 127;
        const edge = m && (x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
          mask[i - 1] <= 127 || mask[i + 1] <= 127 || mask[i - w] <= 127 || mask[i + w] <= 127);
        const o = 4 * i;
        if (edge) {
          p[o] = 255; p[o + 1] = 214; p[o + 2] = 10; p[o + 3] = 255;
        } else if (alpha[i] > 0) {
          p[o] = 40; p[o + 1] = 130; p[o + 2] = 255; p[o + 3] = Math.round(alpha[i] * 0.5);
        }
      }
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }

  function drawOverlay(rubber) {
    const ctx = el.overlay.getContext('2d');
    const w = state.width, h = state.height;
    ctx.clearRect(0, 0, w, h);
    if (state.tint) ctx.drawImage(state.tint, 0, 0);
    const s = Math.max(w, h) / 600; // sizes in image pixels, about constant on screen
    ctx.lineWidth = Math.max(1, 2 * s);
    const drawBox = (b, dashed) => {
      ctx.save();
      ctx.strokeStyle = dashed ? '#ffffff' : '#4cff8f';
      if (dashed) ctx.setLineDash([6 * s, 4 * s]);
      ctx.strokeRect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0);
      ctx.restore();
    };
    if (state.box) drawBox(state.box, false);
    if (rubber) drawBox(rubber, true);
    for (const pt of state.points) {
      ctx.beginPath();
      ctx.arc(pt.x, pt.y, Math.max(3, 6 * s), 0, 2 * Math.PI);
      ctx.fillStyle = pt.label ? '#2ecc71' : '#ff4d4d';
      ctx.fill();
      ctx.strokeStyle = '#ffffff';
      ctx.stroke();
    }
    const n = state.points.length;
    const parts = [];
    if (n) parts.push(n + ' point' + (n === 1 ? '' : 's'));
    if (state.box) parts.push('box');
    if (state.text) parts.push('text');
    el.promptInfo.textContent = parts.length ? parts.join(' + ') : '–';
  }

  function clearResult() {
    abortMatte();
    Object.assign(state, { resultId: null, alphaURL: null, alpha: null, mask: null, tint: null, iou: null });
    el.resultEmpty.hidden = false;
    el.resultCaption.textContent = '';
    el.matteTime.textContent = '–';
    el.result.getContext('2d').clearRect(0, 0, el.result.width, el.result.height);
    el.resultWrap.classList.remove('checker');
    delete document.body.dataset.resultId;
    updateButtons();
    drawOverlay();
  }

  function view() { return document.querySelector('input[name=view]:checked').value; }

  function bgRGB() {
    const v = el.bgColor.value;
    return [parseInt(v.slice(1, 3), 16), parseInt(v.slice(3, 5), 16), parseInt(v.slice(5, 7), 16)];
  }

  // composeInto draws the current view of the matte into an ImageData.
  function compose(kind) {
    const w = state.width, h = state.height, a = state.alpha, src = state.photoData.data;
    const out = new ImageData(w, h);
    const p = out.data;
    if (kind === 'alpha') {
      for (let i = 0; i < w * h; i++) { const o = 4 * i; p[o] = p[o + 1] = p[o + 2] = a[i]; p[o + 3] = 255; }
      return out;
    }
    if (kind === 'cutout') {
      for (let i = 0; i < w * h; i++) { const o = 4 * i; p[o] = src[o]; p[o + 1] = src[o + 1]; p[o + 2] = src[o + 2]; p[o + 3] = a[i]; }
      return out;
    }
    let bg = null, rgb = kind === 'greenscreen' ? [0, 255, 0] : bgRGB();
    if (kind === 'composite' && state.bgImage) {
      const c = new OffscreenCanvas(w, h);
      const ctx = c.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(state.bgImage, 0, 0, w, h);
      bg = ctx.getImageData(0, 0, w, h).data;
    }
    for (let i = 0; i < w * h; i++) {
      const o = 4 * i, t = a[i] / 255;
      for (let k = 0; k < 3; k++) {
        const b = bg ? bg[o + k] : rgb[k];
        p[o + k] = t * src[o + k] + (1 - t) * b;
      }
      p[o + 3] = 255;
    }
    return out;
  }

  function drawResult() {
    if (!state.alpha) return;
    const kind = view();
    el.resultWrap.classList.toggle('checker', kind === 'cutout');
    el.result.getContext('2d').putImageData(compose(kind), 0, 0);
    el.resultEmpty.hidden = true;
  }

  for (const r of document.querySelectorAll('input[name=view]')) r.addEventListener('change', drawResult);
  el.bgColor.addEventListener('input', () => { if (view() === 'composite') drawResult(); });
  el.bgFile.addEventListener('change', async () => {
    const f = el.bgFile.files[0];
    el.bgFile.value = '';
    if (!f) return;
    try {
      if (state.bgImage) state.bgImage.close();
      state.bgImage = await createImageBitmap(f);
      el.bgClear.disabled = false;
      document.querySelector('input[name=view][value=composite]').checked = true;
      drawResult();
    } catch (e) {
      setStatus('Cannot read the background image.', 'error');
    }
  });
  el.bgClear.addEventListener('click', () => {
    if (state.bgImage) state.bgImage.close();
    state.bgImage = null;
    el.bgClear.disabled = true;
    drawResult();
  });

  // ---- downloads ----

  function save(blob, name) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  async function serverPNG(query) {
    const resp = await api('api/images/' + state.imageId + '/results/' + state.resultId + '?' + query);
    return resp.blob();
  }

  el.dlAlpha.addEventListener('click', async () => {
    if (!state.alphaURL) return;
    save(dataBlob(state.alphaURL), 'alpha.png');
  });
  el.dlCutout.addEventListener('click', async () => {
    try { save(await serverPNG('output=cutout'), 'cutout.png'); } catch (e) { setStatus('Download failed: ' + e.message, 'error'); }
  });
  el.dlComposite.addEventListener('click', async () => {
    try {
      if (view() === 'greenscreen') {
        save(await serverPNG('output=greenscreen'), 'greenscreen.png');
      } else if (state.bgImage) {
        const c = new OffscreenCanvas(state.width, state.height);
        c.getContext('2d').putImageData(compose('composite'), 0, 0);
        save(await c.convertToBlob({ type: 'image/png' }), 'composite.png');
      } else {
        save(await serverPNG('output=composite&background=' + encodeURIComponent(el.bgColor.value)), 'composite.png');
      }
    } catch (e) { setStatus('Download failed: ' + e.message, 'error'); }
  });

  function updateButtons() {
    const has = !!state.alpha;
    el.dlAlpha.disabled = el.dlCutout.disabled = el.dlComposite.disabled = !has;
    el.undo.disabled = state.history.length === 0 || !state.imageId;
    el.clear.disabled = !hasPrompt();
  }

  // ---- files, drops, token ----

  for (const input of [el.file, el.file2]) {
    input.addEventListener('change', () => { const f = input.files[0]; input.value = ''; openFile(f); });
  }
  document.addEventListener('dragover', (ev) => { ev.preventDefault(); document.body.classList.add('dragging'); });
  document.addEventListener('dragleave', (ev) => { if (!ev.relatedTarget) document.body.classList.remove('dragging'); });
  document.addEventListener('drop', (ev) => {
    ev.preventDefault();
    document.body.classList.remove('dragging');
    const f = ev.dataTransfer && ev.dataTransfer.files[0];
    if (f) openFile(f);
  });
  el.tokenSave.addEventListener('click', () => {
    state.token = el.token.value.trim();
    sessionStorage.setItem('mamToken', state.token);
    el.tokenRow.hidden = !!state.token;
    setStatus(state.token ? 'Token set.' : 'Token cleared.');
    loadInfo();
  });

  loadInfo();
})();
