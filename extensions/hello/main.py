"""Example extension: adds a "Hello" tab and counts the images Kubin has made since it started."""

made = {"images": 0}


def setup(api):
    greeting = api.settings.get("greeting", "Hello from an extension!")

    def count(task, results):
        made["images"] += len(results)
        api.log.info("%d image(s) made so far", made["images"])

    def build(ctx):
        import gradio as gr

        gr.Markdown(f"## {greeting}", elem_id="hello-greeting")
        shown = gr.Markdown(elem_id="hello-count")
        gr.Button("How many images so far?", elem_id="hello-refresh").click(
            lambda: f"{made['images']} image(s) made since Kubin started.", None, shown, queue=False
        )

    api.on("after_job", count)
    api.add_tab("Hello", build)
