"""The greeter's own tests, run by Conveyor's test stage against the built image."""

import os
import unittest

import app


class GreetingTest(unittest.TestCase):
    def test_says_uptime_in_words(self) -> None:
        self.assertIn("up for 2 minutes", app.greeting(125))

    def test_port_is_given(self) -> None:
        self.assertTrue(int(os.environ["PORT"]) > 0)


if __name__ == "__main__":
    unittest.main()
