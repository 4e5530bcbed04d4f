"""``iconolens sanity``: the model parameter randomisation test of a run's saliency methods."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from iconolens.cli.console import CommandConsole
from iconolens.device import DEVICE_HELP
from iconolens.errors import BadInputError

stdout = CommandConsole(highlight=False, soft_wrap=True)


def sanity_command(
    run: Path = typer.Option(..., "--run", help="Run folder with dataset.json and a trained model in model/."),
    methods: str = typer.Option(
        "cam,gradcam,gradcampp,vbp", "--methods",
        help="Comma-separated saliency methods to test (any of `iconolens explain`'s), and 'edges' for the "
        "reference that ignores the model (Sobel edges of the image).",
    ),
    images: int = typer.Option(16, "--images", min=1, help="How many images of the split to use (a seeded sample)."),
    split: Optional[str] = typer.Option(
        None, "--split", help="Take the images from this split (default: val, else test, else every image)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights, the image sample and the methods' noise."),
    image_size: Optional[int] = typer.Option(
        None, "--image-size", min=16, help="Input size to explain at (default: the classifier's own)."
    ),
    independent: bool = typer.Option(
        True, "--independent/--no-independent",
        help="Also randomise each stage alone, every other weight kept (one more model per stage).",
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per forward pass."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    target_layer: Optional[str] = typer.Option(
        None, "--target-layer", help="Module whose output holds the feature maps; found automatically if omitted."
    ),
) -> None:
    """Check that saliency maps depend on what the model learned (Adebayo et al. 2018): re-initialise the
    model's stages from the head down, one more at each step (and each stage alone), and measure how alike
    the maps of the randomised models stay to the trained model's (Spearman rank correlation, also of absolute
    values, SSIM, HOG correlation). Writes RUN/sanity/ (CSV tables, PNG curves, summary.json) and names every
    method whose maps barely change."""
    from iconolens.evaluate.sanity import MEASURES, SanitySettings, sanity_run

    names = list(dict.fromkeys(part.strip() for part in methods.split(",") if part.strip()))
    if not names:
        raise BadInputError("--methods is empty; give saliency methods such as gradcam,vbp")
    settings = SanitySettings(images=images, split=split, seed=seed, image_size=image_size, independent=independent,
                              batch_size=batch_size, target_layer=target_layer, device=device)
    outcome = sanity_run(run, names, settings)
    result = outcome.result

    where = f"split {outcome.split}" if outcome.split else "all splits"
    table = Table(title=f"Similarity to the trained model's maps with every stage randomised "
                        f"({len(outcome.image_ids)} images of {where}, {outcome.input_size} px)")
    table.add_column("method")
    for key in MEASURES:
        table.add_column(key, justify="right")
    means = result.means("cascading")
    for m, method in enumerate(result.methods):
        table.add_row(method, *(f"{means[m, -1, j]:.3f}" for j in range(len(MEASURES))))
    stdout.print(table)
    stdout.print("stages, head first: " + ", ".join(stage.name for stage in result.stages))
    names = [stage.name for stage in result.stages]
    for method, stage in result.falls_at().items():
        if stage is not None:
            stdout.print(f"{method}: Spearman at most {result.flag_threshold} from {stage} on "
                         f"({names.index(stage) + 1} of {len(names)} stages randomised)")
    for problem in outcome.problems:
        stdout.print(f"skipped an unreadable image: {problem['message']}")
    for sentence in result.flags:
        stdout.print(sentence)
    if not result.flags:
        stdout.print(f"every method's maps changed (Spearman at most {result.flag_threshold} with every stage "
                     "randomised)")
    stdout.print("wrote " + ", ".join(str(path) for path in outcome.files.values()))


def register(app: typer.Typer) -> None:
    """Add `sanity` to the main app."""
    app.command("sanity", help=" ".join((sanity_command.__doc__ or "").split()))(sanity_command)
