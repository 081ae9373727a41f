"""GAN augmentation ("gan"): the reverse generator, fine-tuned against a discriminator.

Maximum likelihood alone trains the generator on real prefixes but samples it on its own
(exposure bias), so generated prefixes can drift from anything a shopper would do. Here the
pre-trained generator (`recsys_core.augment.generator`) is fine-tuned to fool a discriminator
that sees real windows and windows whose earlier items were generated. Items are discrete:
the adversarial gradient reaches the generator through straight-through Gumbel-softmax (the
forward pass uses the sampled item, the backward pass the softmax), which has far lower
variance than REINFORCE for a few items per sequence. The likelihood term stays in the loss as
an anchor, so the generator cannot leave the data to chase the discriminator.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from recsys_core.augment import register_augmenter
from recsys_core.augment.discriminator import (
    PairSampler,
    discriminator_step,
    held_out_accuracy,
)
from recsys_core.augment.generator import GeneratorAugmenter, reversed_window_batches
from recsys_core.model import autocast

_REPORT_EVERY_STEPS = 20


@register_augmenter("gan")
class GanAugmenter(GeneratorAugmenter):
    """GeneratorAugmenter plus an adversarial phase between pre-training and generation (A5)."""

    def _fine_tune(
        self,
        pairs: PairSampler,
        sequences: list[np.ndarray],
        kinds: list[np.ndarray],
        train_ids: np.ndarray,
        rng: np.random.Generator,
        torch_rng: torch.Generator,
    ) -> None:
        settings = self.settings
        generator = self.generator
        assert generator is not None
        anchor_ids = np.array([i for i in train_ids if len(sequences[i]) >= 2], dtype=np.int64)
        if not settings.adversarial_steps or not pairs.usable or not len(anchor_ids):
            return  # no sequence long enough to show the discriminator a real prefix
        discriminator = self._new_discriminator()
        d_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=settings.discriminator_lr)
        g_optimizer = torch.optim.AdamW(generator.model.parameters(), lr=settings.generator_lr)
        self.report["disc_acc_heldout_start"] = held_out_accuracy(discriminator, generator, pairs)

        # The discriminator first learns against the likelihood-trained generator, so that its
        # first gradients to the generator carry information.
        self._emit("discriminator warm-up", None, None)
        for _ in range(settings.discriminator_warmup_steps):
            self._check_stop()
            batch = pairs.sample(rng)
            discriminator_step(discriminator, d_optimizer, generator, batch, torch_rng, self.device)
        self.report["disc_acc_heldout_warm"] = held_out_accuracy(discriminator, generator, pairs)

        batch_size = self._mle_batch_size()
        for step in range(1, settings.adversarial_steps + 1):
            self._check_stop()
            d_loss = discriminator_step(
                discriminator, d_optimizer, generator, pairs.sample(rng), torch_rng, self.device
            )
            batch = pairs.sample(rng)
            seeds, seed_kinds = batch.seeds.to(self.device), batch.seed_kinds.to(self.device)
            anchor = rng.choice(anchor_ids, size=min(batch_size, len(anchor_ids)), replace=False)
            windows, window_kinds = reversed_window_batches(
                sequences, kinds, anchor, len(anchor), settings.window, rng
            )[0]
            generator.model.train()
            # The discriminator is a fixed critic during this step: no dropout, no gradients.
            discriminator.eval().requires_grad_(False)
            with autocast(self.device, self.bf16):
                _, draws = generator.rollout(
                    seeds, seed_kinds, torch_rng, straight_through_tau=settings.gumbel_tau
                )
                table = discriminator.table()
                generated = torch.stack([draw.vectors(table) for draw in draws], dim=1)
                logits = discriminator(torch.cat([generated, table[seeds]], dim=1)).float()
                # Non-saturating generator loss: make the discriminator call the fakes real.
                adversarial = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
                likelihood = generator.nll(windows.to(self.device), window_kinds.to(self.device))
                loss = adversarial + settings.mle_weight * likelihood
            g_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(generator.model.parameters(), 1.0)
            g_optimizer.step()
            discriminator.requires_grad_(True)
            if step % _REPORT_EVERY_STEPS == 0 or step == settings.adversarial_steps:
                self._emit(
                    "adversarial training",
                    step,
                    float(adversarial.detach()),
                    total_epochs=settings.adversarial_steps,
                    metrics={"disc_loss": d_loss, "mle_loss": float(likelihood.detach())},
                )
        self.report["adv_disc_acc_heldout"] = held_out_accuracy(discriminator, generator, pairs)
        self.report["discriminator_params"] = float(
            sum(parameter.numel() for parameter in discriminator.parameters())
        )
