"""The PyTorch MNIST example's network and loop, on tensortape.

Same model (two convs, max-pool, two dropouts, two linears, log-softmax), same optimizer (Adadelta,
lr 1.0, StepLR gamma 0.7) and same train/test functions as PyTorch's `examples/mnist/main.py`;
what differs is the imports, the data loading (engine.data instead of torchvision) and the
`--dataset digits` default that runs offline on the bundled 8x8 digits.

    python examples/mnist.py --dataset digits --epochs 5
    python examples/mnist.py --dataset mnist --data-dir data --epochs 14
"""

import argparse

import engine as torch  # the only import change a PyTorch script needs for its tensors ...
import engine.functional as F
import layers as nn  # ... its layers ...
import optimizers as optim  # ... and its optimizers
from engine.data import DataLoader, load_digits, load_mnist
from optimizers.lr_scheduler import StepLR


class Net(nn.Module):
    def __init__(self, flat_features: int = 9216):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(flat_features, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = torch.flatten(x, 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def train(args, model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print(
                f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(train_loader.dataset)}]"
                f"\tLoss: {loss.item():.6f}"
            )


def test(model, device, test_loader):
    model.eval()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += (pred == target.view_as(pred)).sum().item()
    n = len(test_loader.dataset)
    print(
        f"\nTest set: Average loss: {test_loss / n:.4f}, Accuracy: {correct}/{n} "
        f"({100.0 * correct / n:.0f}%)\n"
    )
    return correct / n


def main(argv=None):
    parser = argparse.ArgumentParser(description="tensortape MNIST example")
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist", "fashion"])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-batch-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--gamma", type=float, default=0.7)
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--save-model", action="store_true")
    args = parser.parse_args(argv)

    device = "cuda" if not args.no_cuda and torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    if args.dataset == "digits":
        train_set, test_set = load_digits()
    else:
        train_set, test_set = load_mnist(args.data_dir, kind=args.dataset)
    side = train_set.tensors[0].shape[-1]
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, seed=args.seed)
    test_loader = DataLoader(test_set, args.test_batch_size)

    model = Net(flat_features=64 * ((side - 4) // 2) ** 2).to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    for epoch in range(1, args.epochs + 1):
        train(args, model, device, train_loader, optimizer, epoch)
        accuracy = test(model, device, test_loader)
        scheduler.step()
    if args.save_model:
        torch.save(model.state_dict(), "mnist_cnn.npz")
    return accuracy


if __name__ == "__main__":
    main()
