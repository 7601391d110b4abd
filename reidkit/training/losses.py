"""Re-ID losses shared by strategies: label-smoothed CE, batch-hard triplet, CAL's clothes-adversarial loss."""
from __future__ import annotations


def masked_mean(values, valid=None):
    """Mean of ``values`` over the rows where ``valid`` is true (all rows when None), without a host sync; 0 when none."""
    if valid is None:
        return values.mean()
    weight = valid.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1)


def label_smoothed_ce(logits, targets, epsilon=0.1, valid=None):
    """Cross-entropy against (1 - eps) * one-hot + eps / C (Szegedy et al.; BoT, CAL); ``valid`` masks padding rows."""
    import torch

    log_probs = torch.log_softmax(logits.float(), dim=1)
    num_classes = logits.shape[1]
    target = torch.full_like(log_probs, epsilon / num_classes)
    target.scatter_(1, targets.view(-1, 1), 1 - epsilon + epsilon / num_classes)
    return masked_mean(-(target * log_probs).sum(1), valid)


def batch_hard_triplet(features, labels, margin=0.3, valid=None):
    """Hermans et al.: per anchor, farthest positive vs nearest negative (Euclidean), hinge at ``margin``.

    Anchors without a negative are left out (0 when none has one). ``valid`` (bool per row) masks padding rows:
    they are neither anchors, positives nor negatives. No host sync.
    """
    import torch

    features = features.float()
    dist = torch.cdist(features, features).clamp(min=1e-12)
    same = labels.view(-1, 1) == labels.view(1, -1)
    if valid is None:
        pair = torch.ones_like(same)
        anchors = torch.ones(len(labels), dtype=torch.bool, device=labels.device)
    else:
        pair = valid.view(-1, 1) & valid.view(1, -1)
        anchors = valid
    hardest_pos = (dist * (same & pair)).amax(1)
    hardest_neg = dist.masked_fill(same | ~pair, float("inf")).amin(1)
    anchors = anchors & torch.isfinite(hardest_neg)
    hinge = torch.relu(hardest_pos - torch.where(anchors, hardest_neg, hardest_pos) + margin)
    return masked_mean(hinge, anchors)


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
