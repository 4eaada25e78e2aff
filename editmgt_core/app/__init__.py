"""The browser app (the only part of the package that imports gradio): `server` builds and serves it, `layout`
lays out the page and wires its events, `runs` keeps the page's edit runs, `handlers` the sweep and the API,
`controls` the knobs' controls."""
