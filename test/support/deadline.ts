/** For the fuzz tests: an answer read to its end within a deadline, or a failure that says it hung. */
export interface ReadAnswer {
  status: number;
  contentType: string | null;
  text: string;
}

export async function readWithin(pending: Response | Promise<Response>, ms: number): Promise<ReadAnswer> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no complete answer within ${ms} ms`)), ms);
  });
  try {
    const response = await Promise.race([pending, hang]);
    const text = await Promise.race([response.text(), hang]);
    return { status: response.status, contentType: response.headers.get("content-type"), text };
  } finally {
    clearTimeout(timer);
  }
}
