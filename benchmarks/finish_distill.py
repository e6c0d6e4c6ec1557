"""Distillation in the finish: a subnet finetuned from inherited weights with and without the supernet's largest
subnet as teacher.

    python benchmarks/finish_distill.py RUN_FOLDER [--arch smallest|largest|ARCH.json] [--distill 0 0.5 1]
                                        [--epochs N]

RUN_FOLDER is a `mcuformer search` folder whose supernet training finished (supernet.pt, search.json). The chosen
subnet (default: the smallest fitting one, the case where a teacher has most to give) is extracted and finetuned
with the run's finish settings once per `--distill` weight (the teacher's soft predictions blended into the
targets), post-training quantized, and measured on the validation images held out of the training set (fp32 and
int8 reference). Prints a markdown table with the finetune seconds. The test set is not used.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from bench_common import load_search_run

from mcuformer.arch import load_arch
from mcuformer.data import pixels_to_tensor
from mcuformer.quant.ptq import calibrate
from mcuformer.search.finish import finetune, int8_accuracy
from mcuformer.train import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a search folder with a trained supernet")
    parser.add_argument("--arch", default="smallest", help="smallest, largest or an architecture JSON file")
    parser.add_argument("--distill", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--epochs", type=int, help="finetune epochs (default: the run's preset)")
    args = parser.parse_args()
    sampler, preset, data, net, _ = load_search_run(Path(args.run))
    teacher = net.extract(sampler.arch(sampler.largest()))
    if args.arch in ("smallest", "largest"):
        arch = sampler.arch(sampler.smallest() if args.arch == "smallest" else sampler.largest())
    else:
        arch = load_arch(args.arch)
    val = data.at("val", arch.image_size)
    print(f"student: {arch.to_dict()}\nteacher (largest fitting subnet): fp32 validation accuracy "
          f"{100 * evaluate(teacher, data.at('val', teacher.arch.image_size)):.2f}%\n")  # fmt: skip
    print("| distill weight | fp32 validation | int8 validation (PTQ) | finetune seconds |")
    print("|---|---|---|---|")
    for weight in args.distill:
        finish = replace(preset.finetune, distill=weight, epochs=args.epochs or preset.finetune.epochs, qat_epochs=0)
        out = Path(args.run) / "finish_distill" / f"distill-{weight:g}"
        out.mkdir(parents=True, exist_ok=True)
        start = time.time()
        model = finetune(net.extract(arch).cpu(), data, out, finish, teacher=teacher)
        seconds = time.time() - start
        calibration = calibrate(model, pixels_to_tensor(data.at("train", arch.image_size).images[:512]))
        print(f"| {weight:g} | {100 * evaluate(model, val):.2f}% | {100 * int8_accuracy(model, calibration, val):.2f}% "
              f"| {seconds:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
