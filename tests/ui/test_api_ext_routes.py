"""Extensions' REST routes (ExtensionAPI.add_route) on the shared server: the upscaler and the background
remover run over a server folder through /kubin/api/v1/ext/NAME/folder, keeping the images' names, and say
clearly what is wrong with a bad request; the routes are listed in the API's schema."""

from pathlib import Path

from PIL import Image

EXT = "/kubin/api/v1/ext"


def test_the_upscaler_runs_over_a_server_folder_through_the_rest_api(
    http, api_client, kubin_server, tmp_path
):
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    models = tmp_path / "upscalers"
    models.mkdir()
    torch.manual_seed(0)
    torch.save({"params_ema": ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict()},
               models / "tiny_x2.pth")  # fmt: skip
    api_client.predict(str(models), None, api_name="/upscaler_folder")  # the tab's models folder
    pictures = tmp_path / "holiday"
    pictures.mkdir()
    for name in ("b.png", "a.png"):
        Image.new("RGB", (20, 12), (220, 200, 40)).save(pictures / name)
    (pictures / "notes.txt").write_text("not a picture")

    answer = http.post(f"{EXT}/upscaler/folder", json={"input_dir": str(pictures), "model": "tiny_x2.pth"})

    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["state"] == "done" and Path(run["output"]).name == "holiday"
    assert [(Path(o["source"]).name, Path(o["path"]).name) for o in run["outputs"]] == [
        ("a.png", "a.png"),
        ("b.png", "b.png"),
    ]
    for output in run["outputs"]:
        path = Path(output["path"])
        assert path.is_relative_to(kubin_server.output_dir / "upscale") and Image.open(path).size == (40, 24)
    assert run["skipped"] == [{"file": "notes.txt", "why": "not an image Pillow can read"}]

    missing = http.post(
        f"{EXT}/upscaler/folder", json={"input_dir": str(tmp_path / "nowhere"), "model": "tiny_x2.pth"}
    )
    assert missing.status_code == 422 and "nowhere" in missing.json()["detail"]
    unknown = http.post(f"{EXT}/upscaler/folder", json={"input_dir": str(pictures), "model": "no_such.pth"})
    assert unknown.status_code >= 400 and "no_such.pth" in unknown.json()["detail"]

    wrong = http.post(f"{EXT}/rembg/folder", json={"input_dir": str(pictures), "model": "paint"})
    assert wrong.status_code == 422 and "'paint' is none of u2netp" in wrong.json()["detail"]

    schema = http.get("/kubin/api/openapi.json").json()
    assert {f"{EXT}/upscaler/folder", f"{EXT}/rembg/folder"} <= set(schema["paths"])
