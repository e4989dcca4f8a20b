# Two entry points on a fresh machine: `make demo` and `make test`.
# TORCH_SPEC pins the CPU wheel available on the development machines; on a cluster, install the
# CUDA build of torch first (or override: make setup TORCH_SPEC="torch==2.13.0").
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench bench-model bench-formulations model-data default-model student-model student4-model factor4-model bench-factor4 bench-nfe clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q

demo: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/mpiexec -n 2 $(BIN)/emulator demo --out demo_out

# The recipe of the packaged default model (emulator/default_model/MODEL_CARD.md): 4 training
# pairs (seeds 100-103), the small U-Net on 32^3 crops generating the HR's residual from the LR
# with the band projection (v prediction). Stage 1 trains MODEL_STEPS steps at a constant learning
# rate; stage 2 starts from its EMA weights and trains FINETUNE_STEPS more with the learning rate
# annealed to 0 (cosine); then one density stage per entry of DENSITY_STAGES (its steps), each
# from the weights of the stage before with the loss weighted by the LR's density
# (--density-weight 1, docs/formulations.md) and the learning rate annealed again (a warm
# restart), density stage i in $(MODEL_RUN)/density<i> with seed i; the weights of the last
# one's last step (--ema 0), sampled in 5 steps (--val-steps), go to model.pt with the void map
# of its outpainting of the first training pair (emulator calibrate).
# Resumable: rerunning continues the runs in $(MODEL_RUN). MODEL_OUT is where the calibrated
# model.pt and student.pt go (a rerun from scratch elsewhere leaves the packaged ones alone).
MODEL_RUN ?= default_model_run
MODEL_OUT ?= emulator/default_model
MODEL_LR_PARTICLES ?= 64
MODEL_STEPS ?= 2000
FINETUNE_STEPS ?= 850
DENSITY_STAGES ?= 150 300 300 300
DENSITY_RECIPE = --density-weight 1 --ema 0 --val-steps 5 --learning-rate 1e-4 --lr-schedule cosine
TRAIN_RECIPE = --preset small --tile 32 --core 16 --batch 4 --ema 0.999 --val-every 100 --val-samples 2 \
	--save-every 50 --log-every 10 --seed 0 --formulation residual --lr-band 0.5 --prediction v
model-data: $(STAMP)
	$(BIN)/emulator simulate --out $(MODEL_RUN)/train --boxes 4 --box-size 100 \
		--lr-particles $(MODEL_LR_PARTICLES) --hr-particles 128 --grid 128 --redshift 0 --steps 10 --seed 100

default-model: model-data
	$(BIN)/emulator train --data $(MODEL_RUN)/train --out $(MODEL_RUN)/run --resume $(TRAIN_RECIPE) \
		--steps $(MODEL_STEPS) --learning-rate 2e-4
	$(BIN)/emulator train --data $(MODEL_RUN)/train --out $(MODEL_RUN)/finetune --resume $(TRAIN_RECIPE) \
		--steps $(FINETUNE_STEPS) --learning-rate 2e-4 --lr-schedule cosine --init-from $(MODEL_RUN)/run/model.pt
	set -e; from=$(MODEL_RUN)/finetune; stage=1; for steps in $(DENSITY_STAGES); do \
		$(BIN)/emulator train --data $(MODEL_RUN)/train --out $(MODEL_RUN)/density$$stage --resume \
			$(TRAIN_RECIPE) --steps $$steps --init-from $$from/model.pt $(DENSITY_RECIPE) --seed $$stage \
			--val-every $$steps; \
		from=$(MODEL_RUN)/density$$stage; stage=$$((stage + 1)); done; \
	OMP_NUM_THREADS=1 $(BIN)/mpiexec -n 2 $(BIN)/emulator calibrate --model $$from/model.pt \
		--data $(MODEL_RUN)/train --out $(MODEL_OUT)/model.pt --force

# The packaged student (docs/distillation.md): the default model distilled into STUDENT_NFE (2)
# consistency steps from its dpmpp-2m in STUDENT_TEACHER_NFE (5), STUDENT_STEPS steps with the
# learning rate annealed, then its void map fitted on the
# first training pair outpainted with it (emulator calibrate, docs/fidelity.md). Resumable like
# the above. The teacher is the packaged model.pt (stage 6 with its void map, which distillation
# does not use); STUDENT_TEACHER=$(MODEL_RUN)/density4/model.pt distils a fresh `make default-model`.
# STUDENT_NAME names its run folder and output file.
STUDENT_NAME ?= student
STUDENT_STEPS ?= 300
STUDENT_NFE ?= 2
STUDENT_TEACHER_NFE ?= 5
STUDENT_VAL_EVERY ?= 50
STUDENT_TEACHER ?= emulator/default_model/model.pt
student-model: model-data
	$(BIN)/emulator train --data $(MODEL_RUN)/train --out $(MODEL_RUN)/$(STUDENT_NAME) --resume $(TRAIN_RECIPE) \
		--val-every $(STUDENT_VAL_EVERY) --steps $(STUDENT_STEPS) --learning-rate 2e-4 --lr-schedule cosine \
		--init-from $(STUDENT_TEACHER) --distill-steps $(STUDENT_NFE) --teacher-steps $(STUDENT_TEACHER_NFE)
	OMP_NUM_THREADS=1 $(BIN)/mpiexec -n 2 $(BIN)/emulator calibrate --model $(MODEL_RUN)/$(STUDENT_NAME)/model.pt \
		--data $(MODEL_RUN)/train --out $(MODEL_OUT)/$(STUDENT_NAME).pt --force

# The four-step student (docs/distillation.md; not packaged): the same in 4 steps over 600 (19
# minutes, then 4 to calibrate, on a 2-core Xeon under bf16); it goes to $(MODEL_OUT)/student4.pt.
student4-model: model-data
	$(MAKE) student-model STUDENT_NAME=student4 STUDENT_NFE=4 STUDENT_STEPS=600 STUDENT_VAL_EVERY=200

# Factor 4 per side (issue 12's table; not shipped): the default model's whole recipe (stages 1-2,
# the density stages, calibrate) on its data seeds and grid with LR 32^3 instead of 64^3 particles,
# so LR 32^3 -> HR 128^3 in 100 Mpc/h; the calibrated model goes to $(FACTOR4_RUN)/model.pt.
# Resumable. bench-factor4 measures it on 4 held-out 64^3 boxes at the same resolution.
FACTOR4_RUN ?= factor4_run
factor4-model: $(STAMP)
	$(MAKE) default-model MODEL_RUN=$(FACTOR4_RUN) MODEL_OUT=$(FACTOR4_RUN) MODEL_LR_PARTICLES=32

bench-factor4: $(STAMP)
	$(BIN)/emulator simulate --out $(FACTOR4_RUN)/heldout --boxes 4 --box-size 50 --lr-particles 16 \
		--hr-particles 64 --grid 64 --redshift 0 --steps 10 --seed 90210
	$(BIN)/python benchmarks/bench_heldout.py --model factor4=$(FACTOR4_RUN)/model.pt \
		--pairs $(FACTOR4_RUN)/heldout/box_000*.h5 --samples 2 --steps 5 --json $(FACTOR4_RUN)/bench_heldout.json

# Issue 13's NFE table: the default model (dpmpp-2m) and its student (consistency) at 1-20 network
# evaluations against the model's 2000-step ddpm, 8 seeds of one held-out tile (an hour on 2 CPU
# cores in float32; 20 minutes on 2 cores with native bf16, which --bf16 uses where the CPU has it).
# The baseline's spectra stay in bench_nfe_baseline.npz: a rerun against the same model takes them
# from there and costs a minute.
bench-nfe: $(STAMP)
	$(BIN)/python benchmarks/bench_samplers.py --model emulator/default_model emulator/default_model/student.pt \
		--samplers dpmpp-2m,consistency --nfe 1,2,4,5,8,20 --seeds 8 --crops 1 --baseline-steps 2000 \
		--lr-consistency off --bf16 --json bench_nfe.json --baseline-cache bench_nfe_baseline.npz

# The formulations at one fixed budget on the default model's data (hours on 2 CPU cores).
bench-formulations: model-data
	$(BIN)/python benchmarks/bench_formulations.py --data $(MODEL_RUN)/train --runs formulation_runs

# Code benchmarks (minutes on a laptop), then a smoke run of the sampler table.
bench: $(STAMP)
	for name in paint pm stats unet outpaint; do $(BIN)/python benchmarks/bench_$$name.py || exit 1; done
	$(BIN)/python benchmarks/bench_samplers.py --quick

# The default model's fidelity: the full sampler table (issue 5; with its own trained LR band only,
# which --lr-consistency on at 0.5 would repeat) and outpainted held-out boxes.
# Hours on a 2-core CPU, minutes on a GPU.
bench-model: $(STAMP)
	$(BIN)/python benchmarks/bench_samplers.py --lr-consistency off --json bench_samplers.json
	$(BIN)/python benchmarks/bench_fidelity.py --json bench_fidelity.json
	$(BIN)/emulator simulate --out heldout --boxes 4 --box-size 50 --lr-particles 32 --hr-particles 64 \
		--grid 64 --redshift 0 --steps 10 --seed 90210
	$(BIN)/python benchmarks/bench_heldout.py --pairs heldout/box_000*.h5 --samples 2 --steps 5 \
		--json bench_heldout.json

clean:
	rm -rf $(VENV) demo_out .pytest_cache bench_nfe.json bench_samplers.json bench_fidelity.json bench_heldout.json heldout formulation_runs
