"""The PyTorch VAE example's model and loop, on tensortape.

Same model (784-400-20 encoder with mean and log-variance heads, 20-400-784 decoder), same loss
(Bernoulli reconstruction summed + analytic KL), same Adam(lr=1e-3) and the same reconstruction and
sample grids as PyTorch's `examples/vae/main.py`; what differs is the imports, the data loading and
the `--dataset digits` default (8x8, offline) that sizes the input to 64 pixels.

    python examples/vae.py --dataset digits --epochs 10
"""

import argparse
import os

import engine as torch
import engine.functional as F
import layers as nn
import optimizers as optim
from engine.data import DataLoader, load_digits, load_mnist
from engine.utils import save_image


class VAE(nn.Module):
    def __init__(self, pixels: int = 784, hidden: int = 400, latent: int = 20):
        super().__init__()
        self.pixels = pixels
        self.fc1 = nn.Linear(pixels, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, pixels)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, self.pixels))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    """Reconstruction (Bernoulli NLL, summed) + KL(q(z|x) || N(0, I))."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.shape[1]), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def main(argv=None):
    parser = argparse.ArgumentParser(description="tensortape VAE example")
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist", "fashion"])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    load = (
        load_digits if args.dataset == "digits" else lambda: load_mnist(args.data_dir, args.dataset)
    )
    train_set, test_set = load()
    side = train_set.tensors[0].shape[-1]
    train_loader = DataLoader(
        train_set, args.batch_size, shuffle=True, seed=args.seed, device=device
    )
    test_loader = DataLoader(test_set, args.batch_size, device=device)
    model = VAE(pixels=side * side).to(device)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    os.makedirs(args.out, exist_ok=True)

    for epoch in range(1, args.epochs + 1):
        model.train()
        train_loss = 0.0
        for data, _ in train_loader:
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = loss_function(recon, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for i, (data, _) in enumerate(test_loader):
                recon, mu, logvar = model(data)
                test_loss += loss_function(recon, data, mu, logvar).item()
                if i == 0:
                    n = min(data.shape[0], 8)
                    pairs = torch.cat([data[:n], recon.view(-1, 1, side, side)[:n]])
                    save_image(pairs, f"{args.out}/reconstruction_{epoch}.png", nrow=n)
            sample = model.decode(torch.randn(64, 20, device=device))
            save_image(sample.view(64, 1, side, side), f"{args.out}/sample_{epoch}.png")
        print(
            f"====> Epoch: {epoch} Average loss: {train_loss / len(train_set):.4f}"
            f"  Test set loss: {test_loss / len(test_set):.4f}"
        )
    return test_loss / len(test_set)


if __name__ == "__main__":
    main()
