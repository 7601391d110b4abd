"""The ``tiny-cnn`` backbone: a small convolutional network with a BNNeck, trained from scratch (nothing to download)."""
from reidkit.contracts import Setting


def build_tiny_cnn(channels=16, blocks=3, feature_dim=64):
    """A TinyCNN (contract: reidkit.training.contracts.Backbone); these parameters are its settings."""
    from torch import nn  # torch only once the backbone is built

    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            layers, width = [], 3
            for block in range(blocks):  # each block halves the resolution and doubles the width
                out = channels * 2**block
                layers += [nn.Conv2d(width, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                width = out
            self.trunk = nn.Sequential(*layers)
            self.embed = nn.Linear(width, feature_dim)
            self.feature_dim = feature_dim  # the strategy's heads are built for this width
            self.bn = nn.BatchNorm1d(feature_dim)  # the BNNeck; no shift, as BoT
            self.bn.bias.requires_grad_(False)

        def features(self, images):  # the pooled embedding, before the neck (video training averages these)
            return self.embed(self.trunk(images).mean((2, 3)))

        def neck(self, features):
            return self.bn(features)

        def forward(self, images):  # N x 3 x H x W, ImageNet-normalised
            features = self.features(images)
            return features, self.neck(features)  # metric losses use the first, classifiers and tests the second

    return TinyCNN()


# checked before anything is built (without it, each parameter's default gives the type)
build_tiny_cnn.settings_spec = {
    "channels": Setting(int, "width of the first block (doubled by each next one)", min=1),
    "blocks": Setting(int, "convolution blocks, each halving the resolution", min=1),
    "feature_dim": Setting(int, "embedding width", min=1),
}
