"""The streaming benchmark's transport floor (`python -m editmgt_core.bench stream`): a Blocks app whose /edit
answers at once, without a model. Run as `python -m editmgt_core.app.echo PORT`."""

import sys

import gradio as gr


def echo_server(port: str) -> None:
    """`stream`'s transport floor: a Blocks app with /edit's first two inputs whose generator yields at once (the
    upload, queue and first-message cost of any gradio endpoint on this machine, without the model)."""

    def echo(image, instruction):
        yield None, {"step": 0}
        yield None, {"done": True}

    with gr.Blocks() as demo:
        inputs = [gr.Image(type="filepath"), gr.Textbox()]
        gr.Button().click(echo, inputs, [gr.Image(), gr.JSON()], api_name="edit")
    demo.queue()._queue.sleep_when_free = 0.01  # as the studio's queue (app.calm_queue): no 1 ms poll beside the edits
    demo.launch(server_name="127.0.0.1", server_port=int(port), quiet=True)


if __name__ == "__main__":
    echo_server(sys.argv[1])
