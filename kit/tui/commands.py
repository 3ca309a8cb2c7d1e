"""The command palette (Ctrl+P): switch life stage or persona, export the transcript, copy
the last reply, and the other actions, found by fuzzy search."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class PerskitCommands(Provider):
    def _commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        session = app.session
        out = [(f"Stage: {s.label} ({s.id})", partial(app.switch_stage, s.id),
                "current stage" if s.id == session.stage else "switch life stage (the system prompt changes)")
               for s in session.persona.stages]
        out += [(f"Persona: {view.name}", partial(app.switch_persona, i),
                 "current persona" if view.id == session.persona.id else "chat with this persona (new conversation)")
                for i, (view, _) in enumerate(app.personas)]
        out += [("Export transcript as Markdown", partial(app.export, ["md"]), "to the data folder"),
                ("Export transcript as JSON", partial(app.export, ["json"]), "to the data folder"),
                ("Copy last reply", app.action_copy_last, "to the clipboard"),
                ("New conversation", app.action_clear, "the old one stays in the history"),
                ("Regenerate last reply", app.action_regen, ""),
                ("Sampling settings", app.action_settings, "temperature, top-p, penalties, max tokens"),
                ("Help", app.action_help, "keys and slash commands")]
        if session.active_lore() is not None:  # only with --retrieve: nothing to show otherwise
            shown = app.query_one("#passages").display
            out.append(("Hide retrieved passages" if shown else "Show retrieved passages", app.action_passages,
                        "the persona's passages the last reply was given (F2)"))
        return out

    async def discover(self) -> Hits:
        for name, run, help_text in self._commands():
            yield DiscoveryHit(name, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, run, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)
