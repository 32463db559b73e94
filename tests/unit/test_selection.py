"""Best and last accuracy: the best test epoch, or the best validation epoch when held out."""

from recu_core.selection import BestSoFar


def test_best_test_accuracy_is_the_maximum_over_epochs():
    best = BestSoFar()
    news = [best.update(e, {"test_acc": acc}) for e, acc in enumerate([0.5, 0.7, 0.6], 1)]
    assert news == [True, True, False]
    assert best.figures() == {"best_test_acc": 0.7, "best_test_epoch": 2.0, "best_epoch": 2.0}


def test_with_a_validation_split_the_best_epoch_is_chosen_on_validation():
    best = BestSoFar()
    epochs = [{"test_acc": 0.5, "val_acc": 0.6}, {"test_acc": 0.8, "val_acc": 0.55}]
    news = [best.update(e, m) for e, m in enumerate(epochs, 1)]
    assert news == [True, False]  # epoch 2 is the best on test but not on validation
    figures = best.figures()
    assert figures["best_test_acc"] == 0.8
    assert figures["best_epoch"] == 1.0
    assert (figures["best_val_acc"], figures["test_acc_at_best_val"]) == (0.6, 0.5)


def test_restored_from_an_epochs_metrics_it_continues_as_if_never_stopped():
    straight, resumed = BestSoFar(), None
    epochs = [{"test_acc": a, "val_acc": v} for a, v in [(0.4, 0.5), (0.6, 0.4), (0.5, 0.7)]]
    for e, m in enumerate(epochs, 1):
        straight.update(e, m)
        if e == 2:
            resumed = BestSoFar.from_metrics(m | straight.figures())
    assert resumed is not None
    resumed.update(3, epochs[2])
    assert resumed.figures() == straight.figures()
