"""SQL of runs and task outputs: every statement names its tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.run import TERMINAL_STATUSES, Run, RunTaskOutput


class RunRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> Run:
        run = Run(**values)
        self.session.add(run)
        await self.session.flush()
        await self.session.refresh(run)
        return run

    async def get(self, tenant_id: str, run_id: uuid.UUID, *, lock: bool = False) -> Run | None:
        statement = select(Run).where(Run.tenant_id == tenant_id, Run.id == run_id)
        if lock:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def update(self, run: Run, values: dict[str, Any]) -> Run:
        await self.session.execute(
            update(Run)
            .where(Run.tenant_id == run.tenant_id, Run.id == run.id)
            .values(**values, updated_at=func.now())
        )
        await self.session.flush()
        await self.session.refresh(run)
        return run

    async def delete(self, tenant_id: str, run_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(Run).where(Run.tenant_id == tenant_id, Run.id == run_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def listing(
        self,
        tenant_id: str,
        *,
        flow_name: str | None,
        status: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> Select[Run]:
        statement = select(Run).where(Run.tenant_id == tenant_id)
        if flow_name is not None:
            statement = statement.where(Run.flow_name == flow_name)
        if status is not None:
            statement = statement.where(Run.status == status)
        if since is not None:
            statement = statement.where(Run.created_at >= since)
        if until is not None:
            statement = statement.where(Run.created_at < until)
        return statement

    async def usage(self, tenant_id: str) -> tuple[int, int]:
        """(runs, bytes of parameters and task outputs) the tenant stores."""
        runs = select(
            func.count().label("runs"), func.coalesce(func.sum(Run.parameters_bytes), 0)
        ).where(Run.tenant_id == tenant_id)
        count, parameter_bytes = (await self.session.execute(runs)).one()
        output_bytes = (
            await self.session.execute(
                select(func.coalesce(func.sum(RunTaskOutput.output_bytes), 0)).where(
                    RunTaskOutput.tenant_id == tenant_id
                )
            )
        ).scalar_one()
        return int(count), int(parameter_bytes) + int(output_bytes)

    async def get_output(
        self, tenant_id: str, run_id: uuid.UUID, task_id: str
    ) -> RunTaskOutput | None:
        return (
            await self.session.execute(
                select(RunTaskOutput).where(
                    RunTaskOutput.tenant_id == tenant_id,
                    RunTaskOutput.run_id == run_id,
                    RunTaskOutput.task_id == task_id,
                )
            )
        ).scalar_one_or_none()

    async def put_output(
        self, tenant_id: str, run_id: uuid.UUID, task_id: str, output: Any, size: int
    ) -> RunTaskOutput:
        statement = insert(RunTaskOutput).values(
            tenant_id=tenant_id, run_id=run_id, task_id=task_id, output=output, output_bytes=size
        )
        upsert = statement.on_conflict_do_update(
            index_elements=["tenant_id", "run_id", "task_id"],
            set_={
                "output": statement.excluded.output,
                "output_bytes": statement.excluded.output_bytes,
                "updated_at": func.now(),
            },
        ).returning(RunTaskOutput)
        result = await self.session.execute(upsert, execution_options={"populate_existing": True})
        row: RunTaskOutput = result.scalar_one()
        return row

    async def delete_created_before(
        self,
        cutoff: datetime,
        *,
        tenants: Sequence[str] | None,
        exclude: Sequence[str] = (),
        dry_run: bool = False,
    ) -> int:
        """Delete (or count) the runs created before `cutoff` of the tenants listed (None: all)
        but those excluded; their outputs go with them (ON DELETE CASCADE)."""
        conditions: list[Any] = [Run.created_at < cutoff]
        if tenants is not None:
            conditions.append(Run.tenant_id.in_(tenants))
        if exclude:
            conditions.append(Run.tenant_id.not_in(exclude))
        if dry_run:
            counted = await self.session.execute(
                select(func.count()).select_from(Run).where(*conditions)
            )
            return int(counted.scalar_one())
        result = await self.session.execute(delete(Run).where(*conditions))
        await self.session.flush()
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def totals(self) -> dict[str, int]:
        """Runs across every tenant, and how many are not finished (for the admin stats)."""
        row = (
            await self.session.execute(
                select(
                    func.count().label("runs"),
                    func.count().filter(Run.status.not_in(list(TERMINAL_STATUSES))),
                ).select_from(Run)
            )
        ).one()
        return {"runs": int(row[0]), "runs_active": int(row[1])}
