"""Re-ID losses shared by strategies: label-smoothed CE, batch-hard triplet, CAL's clothes-adversarial loss."""
from __future__ import annotations


def label_smoothed_ce(logits, targets, epsilon=0.1):
    """Cross-entropy against (1 - eps) * one-hot + eps / C (Szegedy et al.; BoT, CAL)."""
    import torch

    log_probs = torch.log_softmax(logits.float(), dim=1)
    num_classes = logits.shape[1]
    target = torch.full_like(log_probs, epsilon / num_classes)
    target.scatter_(1, targets.view(-1, 1), 1 - epsilon + epsilon / num_classes)
    return -(target * log_probs).sum(1).mean()


def batch_hard_triplet(features, labels, margin=0.3):
    """Hermans et al.: per anchor, farthest positive vs nearest negative (Euclidean), hinge at ``margin``."""
    import torch

    features = features.float()
    dist = torch.cdist(features, features).clamp(min=1e-12)
    same = labels.view(-1, 1) == labels.view(1, -1)
    hardest_pos = (dist * same).amax(1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(1)
    valid = torch.isfinite(hardest_neg)
    if not valid.any():
        return features.sum() * 0
    return torch.relu(hardest_pos[valid] - hardest_neg[valid] + margin).mean()


def clothes_adversarial(cosine_logits, clothes, positive_mask, scale=16.0, epsilon=0.1):
    """CAL's loss (Gu et al. 2022): make a person's outfits indistinguishable to the clothes classifier.

    ``cosine_logits``: N x C cosine similarities to the clothes classes;
    ``positive_mask``: N x C, 1 for the clothes classes of the sample's person (the true one included).
    Each class j competes only against other persons' clothes:
    log p_j = s_j - log(exp(s_j) + sum_{n not of this person} exp(s_n)).
    Target, as CAL's reference code: (1 - eps) * onehot(true) + eps / |P| * P, so with two outfits
    0.95 / 0.05 and with one outfit all mass on the true class.
    """
    import torch

    s = scale * cosine_logits.float()
    pos = positive_mask.float()
    neg = 1 - pos
    neg_sum = (torch.exp(s) * neg).sum(1, keepdim=True)
    log_prob = s - torch.log(torch.exp(s) + neg_sum)
    true = torch.zeros_like(s).scatter_(1, clothes.view(-1, 1), 1.0)
    target = (1 - epsilon) * true + epsilon * pos / pos.sum(1, keepdim=True)
    return -(target * log_prob).sum(1).mean()
