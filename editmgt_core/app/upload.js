// Uploads are prepared in the browser before the image editor sees them (app.py: gr.HTML js_on_load, `element`
// is the note under the editor): decoded once, downscaled to the side the model can use, refused with a visible
// note when undecodable or beyond the pixel limit.
const note = element.querySelector('#upload-note');
const SIDE = Number(note.dataset.side), LIMIT = Number(note.dataset.pixels);
const say = (text, bad) => { note.textContent = text; note.dataset.kind = bad ? 'error' : (text ? 'info' : '');
  note.style.cssText = bad ? 'color:#b91c1c;font-weight:600;padding:4px 0' : 'padding:4px 0'; };
// file -> the file to hand on (downscaled to SIDE when larger), or null after saying why it was refused
const prepare = async (file) => {
  const name = file.name || 'the pasted image';
  say(`Reading ${name} (${(file.size / 1e6).toFixed(1)} MB)…`);
  let bitmap;
  try { bitmap = await createImageBitmap(file, {imageOrientation: 'from-image'}); } catch (err) {
    say(`${name} could not be decoded as an image: use PNG, JPEG, WebP, BMP or GIF.`, true); return null;
  }
  const w = bitmap.width, h = bitmap.height;
  if (w * h > LIMIT) {
    say(`${name} is ${w}x${h} (${(w * h / 1e6).toFixed(0)} megapixels); the limit is ${LIMIT / 1e6} megapixels.`,
        true);
    return null;
  }
  const scale = Math.min(1, SIDE / Math.max(w, h));
  if (scale === 1) { say(''); return file; }
  const cw = Math.max(1, Math.round(w * scale)), ch = Math.max(1, Math.round(h * scale));
  const canvas = new OffscreenCanvas(cw, ch);
  canvas.getContext('2d').drawImage(bitmap, 0, 0, cw, ch);
  const blob = await canvas.convertToBlob({type: 'image/png'});
  say(`${name} is ${w}x${h}: downscaled to ${cw}x${ch} in the browser (the model edits far fewer pixels).`);
  return new File([blob], (file.name || 'pasted').replace(/\.[^.]*$/, '') + '.png', {type: 'image/png'});
};
const inEditor = (target) => target instanceof Element && target.closest('#image-in');
const handOn = (file) => { const files = new DataTransfer(); files.items.add(file); return files; };
document.addEventListener('change', async (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || input.type !== 'file' || !inEditor(input)) return;
  if (input.dataset.prepared) { delete input.dataset.prepared; return; }
  const file = input.files && input.files[0];
  if (!file) return;
  event.stopImmediatePropagation();
  const out = await prepare(file);
  if (!out) { input.value = ''; return; }
  input.files = handOn(out).files;
  input.dataset.prepared = '1';
  input.dispatchEvent(new Event('change', {bubbles: true}));
}, true);
// a file dropped on the editor takes the same path: stopped here, prepared, dropped again
const prepared = new WeakSet();
document.addEventListener('drop', async (event) => {
  if (prepared.has(event) || !inEditor(event.target)) return;
  const file = [...((event.dataTransfer && event.dataTransfer.files) || [])][0];
  if (!file) return;
  event.preventDefault();
  event.stopImmediatePropagation();
  const out = await prepare(file);
  if (!out) return;
  const init = {bubbles: true, cancelable: true, composed: true, dataTransfer: handOn(out)};
  const again = new DragEvent('drop', init);
  prepared.add(again);
  event.target.dispatchEvent(again);
}, true);
// the editor's paste button reads the clipboard itself: its images are prepared on the way (a refused one reads as
// an empty clipboard, with the note saying why)
const clipboard = navigator.clipboard;
if (clipboard && clipboard.read && !clipboard.read.prepared) {
  const read = clipboard.read.bind(clipboard);
  clipboard.read = async (...args) => {
    const items = await read(...args), kept = [];
    for (const item of items) {
      const type = item.types.find((t) => t.startsWith('image/'));
      if (!type) { kept.push(item); continue; }
      const out = await prepare(new File([await item.getType(type)], 'the pasted image', {type}));
      if (out) kept.push(new ClipboardItem({[out.type]: out}));
    }
    return kept;
  };
  clipboard.read.prepared = true;
}
